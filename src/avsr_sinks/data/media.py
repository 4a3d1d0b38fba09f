"""Audio and video file I/O through PyAV (no torchaudio, no opencv).

Layouts:
  * audio: ``np.ndarray`` float32, shape ``(num_samples,)``, mono, values in ``[-1, 1]``, 16 kHz by default.
  * video: ``np.ndarray`` uint8, shape ``(T, H, W)``, grayscale, one entry per decoded frame.

Every failure is a :class:`MediaError` (a ``ValueError``) whose message names the file, the problem and
what to do, so a data loader can wrap it with the utterance id without losing information.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avsr_sinks.io import atomic_path

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FPS = 25

# Limited-range luma (16-235) -> full-range grey (0-255), as swscale's yuv420p -> gray conversion does.
_LIMITED_TO_FULL = np.clip(np.rint((np.arange(256) - 16) * (255 / 219)), 0, 255).astype(np.uint8)
_LIMITED_RANGE = (0, 1)  # AVColorRange: unspecified (taken as limited, as swscale does) or MPEG


def _gray(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as full-range grey uint8 ``(H, W)``.

    For limited-range yuv420p (H.264's usual output) the Y plane is read directly and expanded with a
    table: equal to ``to_ndarray(format="gray")`` on every frame of the synthetic corpus and about 9x
    faster, which matters because decoding dominates video feature extraction.
    """
    if frame.format.name == "yuv420p" and frame.color_range in _LIMITED_RANGE:
        return _LIMITED_TO_FULL[frame.to_ndarray()[: frame.height]]
    return frame.to_ndarray(format="gray")


# PyAV raises FFmpegError for demux/decode failures; OSError covers permission and I/O problems.
_AV_ERRORS = (av.FFmpegError, OSError)


class MediaError(ValueError):
    """A media file is missing, unreadable, corrupt, truncated or empty."""

    def __init__(self, path: str | os.PathLike[str], problem: str, hint: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.reason = f"{problem} ({hint})" if hint else problem  # the message without the file name
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class MediaInfo:
    """Container metadata without decoding: ``frames`` counts video frames or audio samples."""

    path: Path
    kind: str  # "audio" or "video"
    duration: float  # seconds
    frames: int
    rate: float  # frames per second (video) or samples per second (audio)
    channels: int | None = None
    width: int | None = None
    height: int | None = None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "file is missing", "check the corpus root and the label row's relative_path")
    if not path.is_file():
        raise MediaError(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)", "re-extract or re-download it")


# The demuxer each corpus file type must open with. FFmpeg probes content, not names, so damaged bytes
# can pass for some raw format (random data is read as raw H.263 or LRC lyrics about once in 200 tries)
# and decode to noise; a name/demuxer mismatch is reported as corruption instead.
_DEMUXER_BY_SUFFIX = {".mp4": "mp4", ".m4a": "m4a", ".mov": "mov", ".wav": "wav", ".flac": "flac"}


def _open(path: Path) -> av.container.InputContainer:
    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except _AV_ERRORS as err:
        raise MediaError(path, f"unreadable or corrupt container: {err}", "re-extract the file") from err
    expected = _DEMUXER_BY_SUFFIX.get(path.suffix.lower())
    if expected and expected not in container.format.name.split(","):
        detected = container.format.name
        streams = ", ".join(
            f"{len(found) or 'no'} {kind} stream{'s' if len(found) > 1 else ''}"
            for kind, found in (("video", container.streams.video), ("audio", container.streams.audio))
        )
        container.close()
        raise MediaError(
            path,
            f"corrupt or not a {path.suffix} file: FFmpeg reads it as {detected!r} ({streams})",
            "re-extract the file",
        )
    return container


def read_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream and return float32 mono samples at ``sample_rate``, shape ``(N,)``.

    Other rates and channel layouts are converted (down-mixed and resampled), not rejected.
    """
    path = Path(path)
    container = _open(path)
    chunks: list[np.ndarray] = []
    try:
        if not container.streams.audio:
            raise MediaError(path, "has no audio stream", "extract the audio track to a 16 kHz mono .wav")
        stream = container.streams.audio[0]
        # Resample planar with the source layout, then average the channels ourselves: libswresample's
        # stereo->mono down-mix adds L and R at -3 dB, which changes the level and can exceed [-1, 1].
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=sample_rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0))
        for out in resampler.resample(None):  # flush the resampler's delay line
            chunks.append(out.to_ndarray().mean(axis=0))
    except _AV_ERRORS as err:
        raise MediaError(path, f"audio is corrupt or truncated: {err}", "re-extract the file") from err
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise MediaError(path, "audio stream decodes to no samples", "the file is empty or truncated")
    if not np.all(np.isfinite(samples)):
        raise MediaError(path, "audio contains NaN or infinite samples")
    return np.clip(samples, -1.0, 1.0)


def read_video(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode the first video stream to grayscale uint8 frames, shape ``(T, H, W)``.

    Colour video is converted to its luma (BT.601 Y plane, full range), as ``to_ndarray(format="gray")``.
    A file that decodes fewer frames than its header promises is reported as truncated.
    """
    path = Path(path)
    container = _open(path)
    frames: list[np.ndarray] = []
    try:
        if not container.streams.video:
            raise MediaError(path, "has no video stream (or no frames in it)", "expected 25 fps mouth crops")
        stream = container.streams.video[0]
        expected = int(stream.frames or 0)
        for frame in container.decode(stream):
            frames.append(_gray(frame))
    except _AV_ERRORS as err:
        raise MediaError(path, f"video is corrupt or truncated: {err}", "re-extract the file") from err
    finally:
        container.close()
    if not frames:
        raise MediaError(path, "video has no frames", "re-extract the mouth crops")
    # The mp4 index lists every frame; decoding fewer means the payload was cut off.
    if expected and len(frames) < expected:
        raise MediaError(
            path,
            f"video is truncated: decoded {len(frames)} of {expected} frames",
            "re-extract the file",
        )
    return np.stack(frames)


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Read container metadata (prefers video) without decoding; raises :class:`MediaError`."""
    path = Path(path)
    container = _open(path)
    try:
        if container.streams.video:
            vs = container.streams.video[0]
            rate = float(vs.average_rate or vs.guessed_rate or FPS)
            duration = _stream_duration(container, vs)
            frames = int(vs.frames or round(duration * rate))
            return MediaInfo(path, "video", duration, frames, rate, None, vs.width, vs.height)
        if container.streams.audio:
            aus = container.streams.audio[0]
            rate = float(aus.rate)
            duration = _stream_duration(container, aus)
            return MediaInfo(path, "audio", duration, round(duration * rate), rate, aus.channels)
    finally:
        container.close()
    raise MediaError(path, "has neither an audio nor a video stream")


@dataclass(frozen=True)
class VideoTiming:
    """A video stream's frame rate and whether its frames are evenly spaced (read from the packets)."""

    fps: float
    constant: bool
    min_interval_s: float
    max_interval_s: float


def video_timing(path: str | os.PathLike[str]) -> VideoTiming:
    """The first video stream's timing, from its packets' timestamps (demuxed, not decoded).

    Raises :class:`MediaError` for a file without a readable video stream.
    """
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "has no video stream", f"expected {FPS} fps mouth crops")
        stream = container.streams.video[0]
        stamps = sorted(
            float(packet.pts * stream.time_base)
            for packet in container.demux(stream)
            if packet.pts is not None and packet.size
        )
        declared = float(stream.average_rate or stream.guessed_rate or 0)
    except _AV_ERRORS as err:
        raise MediaError(path, f"video is corrupt or truncated: {err}", "re-extract the file") from err
    finally:
        container.close()
    intervals = np.diff(stamps)
    if not len(intervals):
        return VideoTiming(declared or FPS, True, 0.0, 0.0)
    shortest, longest = float(intervals.min()), float(intervals.max())
    # Timestamps are rounded to the container's time base: allow half a millisecond of jitter.
    return VideoTiming(1.0 / float(np.mean(intervals)), longest - shortest <= 5e-4, shortest, longest)


def _stream_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def write_audio(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically. ``samples``: float ``(N,)`` mono or ``(N, C)`` multi-channel."""
    path = Path(path)
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] not in (1, 2):
        raise ValueError(f"{path}: audio must be (N,) or (N, 1|2) with N > 0, got shape {samples.shape}")
    layout = "mono" if x.shape[1] == 1 else "stereo"
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=sample_rate, layout=layout)
        # Packed s16 expects one row of interleaved channels.
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: int = FPS) -> None:
    """Write H.264 (libx264, yuv420p) mp4 atomically. ``frames``: uint8 ``(T, H, W)`` or ``(T, H, W, 3)``.

    H and W must be even (yuv420p subsampling); mouth crops are 96x96.
    """
    path = Path(path)
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ValueError(
            f"{path}: frames must be uint8 (T, H, W[, 3]) with T > 0, got {arr.dtype} {arr.shape}"
        )
    height, width = arr.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: frame size {width}x{height} must be even for yuv420p")
    fmt = "gray" if arr.ndim == 3 else "rgb24"
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # One thread and a fast preset: corpus writing runs on shared CPUs.
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i, img in enumerate(arr):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt).reformat(
                format="yuv420p"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def check_av_agreement(
    video_path: Path,
    audio_path: Path,
    num_video_frames: int,
    num_audio_samples: int,
    tolerance_s: float = 0.1,
    fps: float = FPS,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Raise :class:`MediaError` when audio and video durations differ by more than ``tolerance_s``."""
    video_s = num_video_frames / fps
    audio_s = num_audio_samples / sample_rate
    if abs(video_s - audio_s) > tolerance_s:
        raise MediaError(
            video_path,
            f"video lasts {video_s:.3f} s ({num_video_frames} frames at {fps:g} fps) but {audio_path} lasts "
            f"{audio_s:.3f} s; they differ by more than the {tolerance_s:g} s tolerance",
            "re-extract both from the same source clip",
        )
