"""Every kind of bad input: the error names the file and line or reason; 'skip' drops and records it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from avsr_sinks.data import media
from avsr_sinks.data.dataset import AVDataset, Collate, Skipped
from avsr_sinks.data.manifest import DataError, SkipReport, labels_path, read_split
from tests.data.conftest import DATASET, moving_square, tone


def append_rows(root: Path, split: str, *lines: bytes) -> None:
    with labels_path(root, split).open("ab") as fh:
        for line in lines:
            fh.write(line + b"\n")


def expect_bad_row(root: Path, split: str, line: int, reason: str, kept: int = 4) -> None:
    """Default mode raises naming file and line; skip mode keeps the good rows and records the bad one."""
    with pytest.raises(DataError, match=rf"{split}\.csv, line {line}: .*{reason}") as info:
        read_split(root, split)
    assert info.value.line == line and Path(info.value.file) == labels_path(root, split)
    report = SkipReport()
    utts = read_split(root, split, on_bad_sample="skip", skip_report=report)
    assert len(utts) == kept and report.count == 1
    (file, got_line, _, got_reason) = report.rows[0]
    assert (file, got_line) == (str(labels_path(root, split)), line) and re.search(reason, got_reason)


def test_missing_media_file(corpus: Path) -> None:
    (corpus / DATASET / "train/spk1/train_001.mp4").unlink()
    expect_bad_row(corpus, "train", 3, r"train_001\.mp4 is missing", kept=3)
    # Found only at load time when the manifest did not look at the files.
    utts = read_split(corpus, "train", check_media=False)
    with pytest.raises(
        DataError,
        match=r"train_001\.mp4: utterance tiny/train/spk1/train_001 \(label row 3\): file is missing",
    ):
        AVDataset(utts, train=True)[1]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_mp4(corpus: Path, tmp_path: Path, damage: str) -> None:
    path = corpus / DATASET / "train/spk2/train_002.mp4"
    data = path.read_bytes()
    path.write_bytes(
        data[: len(data) // 2] if damage == "truncate" else np.random.default_rng(0).bytes(len(data))
    )
    utts = read_split(corpus, "train")
    with pytest.raises(
        DataError, match=r"train_002\.mp4: utterance tiny/train/spk2/train_002 \(label row 4\): .*corrupt"
    ):
        AVDataset(utts, train=True)[2]
    report = SkipReport()
    ds = AVDataset(utts, train=True, on_bad_sample="skip")
    assert isinstance(ds[2], Skipped)
    batches = list(DataLoader(ds, batch_size=4, collate_fn=Collate(report)))
    assert len(batches[0]["uids"]) == 3 and "tiny/train/spk2/train_002" not in batches[0]["uids"]
    assert report.count == 1 and report.rows[0][0] == str(path)
    report.write(tmp_path / "skipped.csv")
    assert "train_002.mp4" in (tmp_path / "skipped.csv").read_text()


def test_skips_reach_main_process_from_workers(corpus: Path) -> None:
    (corpus / DATASET / "val/spk4/val_000.mp4").write_bytes(b"not a video")
    ds = AVDataset(read_split(corpus, "val"), train=False, on_bad_sample="skip")
    report = SkipReport()
    loader = DataLoader(ds, batch_size=3, num_workers=1, collate_fn=Collate(report))
    for batch in loader:
        report.record_batch(batch)
    assert report.count == 1 and report.rows[0][2] == "tiny/val/spk4/val_000"
    failing = DataLoader(AVDataset(ds.utterances, train=False), batch_size=3, num_workers=1)
    with pytest.raises(DataError, match=r"val_000\.mp4: utterance tiny/val/spk4/val_000 \(label row 2\)"):
        next(iter(failing))


def test_video_with_no_frames(corpus: Path) -> None:
    path = corpus / DATASET / "test/spk8/test_001.mp4"
    path.unlink()
    import av

    with av.open(str(path), "w", format="mp4") as out:  # header only, not a single frame
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 96, "yuv420p"
        out.start_encoding()
    with pytest.raises(media.MediaError, match=r"test_001\.mp4: has no video stream \(or no frames"):
        media.read_video(path)
    with pytest.raises(DataError, match="utterance tiny/test/spk8/test_001"):
        AVDataset(read_split(corpus, "test"), train=False)[1]
    path.write_bytes(b"")
    with pytest.raises(media.MediaError, match=r"test_001\.mp4: file is empty"):
        media.read_video(path)


@pytest.mark.parametrize(("rate", "channels"), [(44100, 1), (8000, 2), (16000, 2)])
def test_other_rate_or_stereo_is_converted(corpus: Path, rate: int, channels: int) -> None:
    path = corpus / DATASET / "train/spk0/train_000.wav"  # 25 frames = 1 s
    x = tone(rate, sr=rate)
    media.write_audio(path, np.stack([x] * channels, axis=1) if channels == 2 else x, rate)
    audio = media.read_audio(path)
    assert audio.ndim == 1 and abs(len(audio) - 16000) <= 1
    sample = AVDataset(read_split(corpus, "train"), train=False)[0]
    assert sample["audio"].shape == (25 * 640,)


def test_audio_video_length_mismatch(corpus: Path) -> None:
    path = corpus / DATASET / "train/spk3/train_003.wav"  # video: 25 frames = 1 s
    media.write_audio(path, tone(int(1.5 * 16000)))
    utts = read_split(corpus, "train")
    with pytest.raises(DataError, match=r"video lasts 1\.000 s .*train_003\.wav lasts 1\.500 s"):
        AVDataset(utts, train=False)[3]
    assert AVDataset(utts, train=False, av_tolerance_s=0.6)[3]["audio"].shape == (25 * 640,)
    # Audio only: compared with the label's length instead.
    with pytest.raises(DataError, match="1.500 s"):
        AVDataset(utts, train=False, modalities=["audio"])[3]
    media.write_video(corpus / DATASET / "train/spk3/train_003.mp4", moving_square(40))
    with pytest.raises(DataError, match="has 40 frames but the label says 25"):
        AVDataset(utts, train=False, modalities=["video"])[3]


def test_empty_transcript(corpus: Path) -> None:
    append_rows(corpus, "train", f"{DATASET},train/spk0/train_000b.mp4,25,1 2,  ".encode())
    expect_bad_row(corpus, "train", 6, "transcript is empty")


def test_non_utf8_transcript(corpus: Path) -> None:
    append_rows(
        corpus, "train", f"{DATASET},train/spk0/x.mp4,25,1 2,".encode() + "caf\u00e9".encode("latin-1")
    )
    expect_bad_row(corpus, "train", 6, "is not valid UTF-8")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (b"tiny,train/spk0/train_000.mp4,25,1 2", "expected 5 comma-separated columns, found 4"),
        (b"tiny,train/spk0/train_000.mp4,25,1 2,HI,extra", "found 6"),
        (b"tiny,train/spk0/y.mp4,twenty,1 2,HI", "length_in_video_frames 'twenty' is not an integer"),
        (b"tiny,train/spk0/y.mp4,0,1 2,HI", "must be positive"),
        (b"tiny,train/spk0/y.mp4,25,1 x,HI", "token_ids"),
        (b"tiny,train/spk0/y.wav,25,1,HI", "must name the .mp4"),
        (b"tiny,train/spk0/train_000.mp4,25,1,HI", "duplicate utterance"),
    ],
)
def test_malformed_rows(corpus: Path, row: bytes, reason: str) -> None:
    append_rows(corpus, "train", row)
    with pytest.raises(DataError, match=rf"train\.csv, line 6: .*{reason}"):
        read_split(corpus, "train")
    report = SkipReport()
    assert len(read_split(corpus, "train", "skip", report)) == 4 and report.rows[0][1] == 6


def test_paths_escaping_the_root_are_refused(corpus: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    media.write_video(outside / "v.mp4", moving_square(25))
    media.write_audio(outside / "v.wav", tone(16000))
    (corpus / DATASET / "train/link").symlink_to(outside, target_is_directory=True)
    rows = [
        (b"tiny,../outside/v.mp4,25,1,HI", "escapes the corpus root"),
        (f"tiny,{outside}/v.mp4,25,1,HI".encode(), "is absolute"),
        (b"tiny,train/link/v.mp4,25,1,HI", "outside the corpus root"),
        (b"..,outside/v.mp4,25,1,HI", "must be one folder name"),
    ]
    for row, reason in rows:
        labels_path(corpus, "val").write_bytes(row + b"\n")
        for kwargs in ({}, {"check_media": False}):
            with pytest.raises(DataError, match=rf"val\.csv, line 1: .*{reason}"):
                read_split(corpus, "val", **kwargs)
        report = SkipReport()
        assert read_split(corpus, "val", "skip", report) == [] and reason in report.rows[0][3]
