"""PyAV readers and writers: round trips, conversion, probing, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsr_sinks.data import media
from tests.data.conftest import moving_square, tone


def test_audio_round_trip(tmp_path: Path) -> None:
    x = tone(16000)
    media.write_audio(tmp_path / "a.wav", x)
    y = media.read_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == (16000,)
    assert np.abs(y - x).max() < 1e-4


def test_stereo_44k_is_downmixed_and_resampled(tmp_path: Path) -> None:
    x = tone(44100, sr=44100)
    media.write_audio(tmp_path / "s.wav", np.stack([x, x], axis=1), 44100)
    info = media.probe(tmp_path / "s.wav")
    assert (info.kind, info.rate, info.channels) == ("audio", 44100, 2)
    y = media.read_audio(tmp_path / "s.wav")
    assert y.ndim == 1 and abs(len(y) - 16000) <= 1
    # Averaging identical channels keeps the level (a -3 dB down-mix would not).
    assert abs(np.abs(y).max() - np.abs(x).max()) < 0.05


def test_video_round_trip_gray_and_colour(tmp_path: Path) -> None:
    frames = moving_square(25)
    media.write_video(tmp_path / "g.mp4", frames)
    out = media.read_video(tmp_path / "g.mp4")
    assert out.dtype == np.uint8 and out.shape == (25, 96, 96)
    assert np.abs(out.astype(int) - frames).mean() < 2
    colour = np.stack([frames, frames, frames], axis=-1)
    media.write_video(tmp_path / "c.mp4", colour)
    assert media.read_video(tmp_path / "c.mp4").shape == (25, 96, 96)
    info = media.probe(tmp_path / "g.mp4")
    assert (info.kind, info.frames, info.rate, info.width) == ("video", 25, 25.0, 96)
    assert info.duration == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    ("frames", "problem"),
    [(np.zeros((5, 95, 96), np.uint8), "even"), (np.zeros((5, 96, 96), np.float32), "uint8")],
)
def test_bad_video_write_leaves_nothing(tmp_path: Path, frames: np.ndarray, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        media.write_video(tmp_path / "x.mp4", frames)
    assert list(tmp_path.iterdir()) == []


def test_failed_audio_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        media.write_audio(tmp_path / "x.wav", np.zeros((10, 5)))
    assert list(tmp_path.iterdir()) == []


def test_reading_audio_from_video_only_file(tmp_path: Path) -> None:
    media.write_video(tmp_path / "v.mp4", moving_square(5))
    with pytest.raises(media.MediaError, match=r"v\.mp4: has no audio stream"):
        media.read_audio(tmp_path / "v.mp4")


@pytest.mark.parametrize(
    ("name", "content", "detected"),
    [
        # Damaged bytes FFmpeg's content probe takes for another format; random data hits LRC now and then.
        ("lyrics.mp4", b"[00:01.00]a line\n[00:02.00]another line\n" * 20, "lrc"),
        ("audio.mp4", None, "wav"),
    ],
)
def test_a_file_whose_content_is_another_format_is_corrupt(
    tmp_path: Path, name: str, content: bytes | None, detected: str
) -> None:
    path = tmp_path / name
    if content is None:
        media.write_audio(tmp_path / "a.wav", tone(16000))
        (tmp_path / "a.wav").rename(path)
    else:
        path.write_bytes(content)
    for read in (media.read_video, media.read_audio, media.probe):
        with pytest.raises(media.MediaError, match=rf"{name}: corrupt or not a \.mp4 file: .*'{detected}'"):
            read(path)


def test_av_agreement_names_both_durations(tmp_path: Path) -> None:
    media.check_av_agreement(tmp_path / "v.mp4", tmp_path / "a.wav", 25, 16000 + 800)
    with pytest.raises(media.MediaError, match=r"1\.000 s .*a\.wav lasts 2\.000 s"):
        media.check_av_agreement(tmp_path / "v.mp4", tmp_path / "a.wav", 25, 32000)


def test_fast_grey_path_equals_swscale(tmp_path: Path) -> None:
    import av

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(6, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "colour.mp4"
    media.write_video(path, frames)
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert decoded[0].format.name == "yuv420p"
    expected = np.stack([f.to_ndarray(format="gray") for f in decoded])
    np.testing.assert_array_equal(media.read_video(path), expected)
