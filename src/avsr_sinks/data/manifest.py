"""Label CSVs in the auto_avsr / Llama-AVSR format, and a corpus checker.

Layout of a corpus root ``ROOT``::

    ROOT/labels/{train,val,test}.csv     dataset,relative_path,length_in_video_frames,token_ids,transcript
    ROOT/<dataset>/<relative_path>       25 fps mouth-crop video (.mp4)
    ROOT/<dataset>/<relative_path>.wav   the same path with .wav: the audio

The header line is optional (auto_avsr's files have none); ``token_ids`` are space-separated integers.
A file with only 4 columns has no transcript, which the LLM needs: :func:`read_split` refuses it unless
``require_transcript=False``. Rows are read one physical line at a time (fields with embedded newlines are
not supported), so line numbers in messages are the line numbers an editor shows.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from avsr_sinks.data import media
from avsr_sinks.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

HEADER = ("dataset", "relative_path", "length_in_video_frames", "token_ids", "transcript")
SPLITS = ("train", "val", "test")
BAD_SAMPLE_MODES = ("error", "skip")
_DOCS = "see docs/using_lrs3.md"


class DataError(ValueError):
    """A label row or one of its media files is unusable; names the file, line, utterance and reason."""

    def __init__(
        self,
        reason: str,
        file: str | os.PathLike[str] | None = None,
        line: int | None = None,
        uid: str | None = None,
    ) -> None:
        self.reason, self.file, self.line, self.uid = reason, file, line, uid
        where = "" if file is None else f"{file}" + ("" if line is None else f", line {line}") + ": "
        who = "" if uid is None else f"utterance {uid}: "
        super().__init__(f"{where}{who}{reason}")


@dataclass(frozen=True)
class Utterance:
    """One label row; paths are absolute and checked to lie inside the corpus root."""

    uid: str
    dataset: str
    relative_path: str
    video_path: Path
    audio_path: Path
    num_video_frames: int
    token_ids: tuple[int, ...]
    transcript: str
    line: int


class SkipReport:
    """Rows ``(file, line, uid, reason)`` of dropped samples; repeats (same sample, later epoch) collapse."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int, str, str], None] = {}

    def add(self, file: str | os.PathLike[str], line: int | None, reason: str, uid: str = "") -> None:
        self._rows.setdefault((str(file), -1 if line is None else int(line), uid, reason))

    def add_error(self, err: DataError) -> None:
        self.add(err.file or "", err.line, err.reason, err.uid or "")

    def record_batch(self, batch: dict[str, Any]) -> None:
        """Record the ``skipped`` rows a collate attached to a batch (needed with DataLoader workers)."""
        for row in batch.get("skipped", ()):
            self.add(*row)

    @property
    def count(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> list[tuple[str, int, str, str]]:
        return list(self._rows)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write ``file,line,uid,reason`` CSV atomically (line -1 when unknown)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "line", "uid", "reason"])
        writer.writerows(self._rows)
        write_text_atomic(path, buf.getvalue())


def labels_path(root: Path, split: str) -> Path:
    return Path(root) / "labels" / f"{split}.csv"


def safe_media_path(root: Path, dataset: str, relative_path: str) -> Path:
    """``ROOT/dataset/relative_path``, refusing anything that could leave the root; raises ``ValueError``.

    Refused: absolute paths, ``..`` components, a dataset that is not one plain folder name, and symlinks
    that resolve outside the root. Symlink ROOT itself if the files live elsewhere.
    """
    rel = PurePosixPath(relative_path)
    if not dataset or dataset in (".", "..") or "/" in dataset or "\\" in dataset:
        raise ValueError(f"dataset {dataset!r} must be one folder name under the corpus root")
    if rel.is_absolute() or relative_path.startswith(("/", "\\")) or (len(rel.parts) and ":" in rel.parts[0]):
        raise ValueError(
            f"relative_path {relative_path!r} is absolute; it must be relative to ROOT/{dataset}"
        )
    if ".." in rel.parts or "\\" in relative_path:
        raise ValueError(f"relative_path {relative_path!r} escapes the corpus root ('..' or backslash)")
    path = Path(root) / dataset / rel
    root_real = Path(root).resolve()
    if not path.resolve().is_relative_to(root_real):
        raise ValueError(
            f"{path} resolves to {path.resolve()}, outside the corpus root {root_real} (symlink)"
        )
    return path


def _parse_row(root: Path, fields: list[str], ncols: int, line: int) -> Utterance:
    """Turn CSV fields into an Utterance; raises ``ValueError`` with the reason."""
    if len(fields) != ncols:
        raise ValueError(f"expected {ncols} comma-separated columns, found {len(fields)}")
    dataset, rel, length, ids = (f.strip() for f in fields[:4])
    transcript = fields[4].strip() if ncols == 5 else ""
    if not rel.endswith(".mp4"):
        raise ValueError(f"relative_path {rel!r} must name the .mp4 video (the audio is the same path .wav)")
    try:
        num_frames = int(length)
    except ValueError:
        raise ValueError(f"length_in_video_frames {length!r} is not an integer") from None
    if num_frames <= 0:
        raise ValueError(f"length_in_video_frames {num_frames} must be positive")
    try:
        token_ids = tuple(int(t) for t in ids.split())
    except ValueError:
        raise ValueError(f"token_ids {ids[:40]!r} must be space-separated integers") from None
    if ncols == 5 and not transcript:
        raise ValueError("transcript is empty; every utterance needs its text for the LLM")
    video = safe_media_path(root, dataset, rel)
    audio = safe_media_path(root, dataset, rel[: -len(".mp4")] + ".wav")
    uid = f"{dataset}/{rel[: -len('.mp4')]}"
    return Utterance(uid, dataset, rel, video, audio, num_frames, token_ids, transcript, line)


def read_split(
    root: Path,
    split: str,
    on_bad_sample: str = "error",
    skip_report: SkipReport | None = None,
    check_media: bool = True,
    require_transcript: bool = True,
) -> list[Utterance]:
    """Read ``ROOT/labels/<split>.csv``; with ``check_media`` also require both media files to exist.

    ``on_bad_sample="error"`` raises :class:`DataError` at the first bad row; ``"skip"`` drops it, logs it
    and records it in ``skip_report``. Problems with the file as a whole (missing file, no transcript
    column) always raise.
    """
    if on_bad_sample not in BAD_SAMPLE_MODES:
        raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_MODES}, got {on_bad_sample!r}")
    root = Path(root)
    path = labels_path(root, split)
    if not path.is_file():
        raise DataError(f"label file is missing; expected ROOT/labels/{split}.csv ({_DOCS})", path)
    utts: list[Utterance] = []
    seen: dict[str, int] = {}
    ncols: int | None = None
    skipped = 0
    for line, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError as err:
            text, reason = None, f"is not valid UTF-8 ({err.reason} at byte {err.start}); re-save as UTF-8"
        if text is not None and not text.strip():
            continue
        if text is not None:
            fields = next(csv.reader([text]))
            if ncols is None:
                ncols = len(fields)
                if ncols not in (4, 5):
                    raise DataError(f"has {ncols} columns; expected 4 or 5: {','.join(HEADER)}", path, line)
                if ncols == 4 and require_transcript:
                    raise DataError(
                        "has 4 columns (auto_avsr format) and no transcript column; the LLM is trained on "
                        f"the transcript, so add it as a 5th column ({_DOCS})",
                        path,
                        line,
                    )
                if fields[0].strip().lower() == "dataset":
                    continue
            try:
                utt = _parse_row(root, fields, ncols, line)
                if check_media:
                    for media_path in (utt.video_path, utt.audio_path):
                        if not media_path.is_file():
                            raise ValueError(f"media file {media_path} is missing")
                if utt.uid in seen:
                    raise ValueError(f"duplicate utterance {utt.uid} (first on line {seen[utt.uid]})")
                seen[utt.uid] = line
                utts.append(utt)
                continue
            except ValueError as err:
                reason = str(err)
        if on_bad_sample == "error":
            raise DataError(f"{reason} (pass on_bad_sample='skip' to drop such rows)", path, line)
        skipped += 1
        log.warning("skipping %s line %d: %s", path, line, reason)
        if skip_report is not None:
            skip_report.add(path, line, reason)
    if skipped:
        log.warning("%s: skipped %d bad row(s), kept %d", path, skipped, len(utts))
    return utts


def write_split(
    root: Path, split: str, rows: Iterable[Utterance | Sequence[Any]], header: bool = True
) -> Path:
    """Write ``ROOT/labels/<split>.csv`` atomically from Utterances or 4/5-field sequences.

    A sequence's ``token_ids`` field may be a string or a sequence of ints. ``header=False`` writes the
    headerless auto_avsr style.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    out_rows = []
    for row in rows:
        if isinstance(row, Utterance):
            row = (row.dataset, row.relative_path, row.num_video_frames, row.token_ids, row.transcript)
        fields = list(row)
        if not isinstance(fields[3], str):
            fields[3] = " ".join(str(int(t)) for t in fields[3])
        out_rows.append(fields)
    if header:
        ncols = len(out_rows[0]) if out_rows else len(HEADER)
        writer.writerow(HEADER[:ncols])
    writer.writerows(out_rows)
    path = labels_path(root, split)
    write_text_atomic(path, buf.getvalue())
    return path


def load_media(
    utt: Utterance,
    modalities: Sequence[str] = ("audio", "video"),
    av_tolerance_s: float = 0.1,
    sample_rate: int = media.SAMPLE_RATE,
    fps: float = media.FPS,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Decode ``(video (T, H, W) uint8, audio (N,) float32)`` for the requested modalities and check them.

    Checks: the video's frame count matches the label and the audio duration matches the video (or the
    label, for audio only) within ``av_tolerance_s``. Any problem raises :class:`DataError` naming the uid.
    """
    video = audio = None
    try:
        if "video" in modalities:
            video = media.read_video(utt.video_path)
            if abs(len(video) - utt.num_video_frames) / fps > av_tolerance_s:
                raise media.MediaError(
                    utt.video_path,
                    f"has {len(video)} frames but the label says {utt.num_video_frames}",
                    "fix length_in_video_frames in the label file",
                )
        if "audio" in modalities:
            audio = media.read_audio(utt.audio_path, sample_rate)
            frames = len(video) if video is not None else utt.num_video_frames
            media.check_av_agreement(
                utt.video_path, utt.audio_path, frames, len(audio), av_tolerance_s, fps, sample_rate
            )
    except media.MediaError as err:
        raise DataError(err.reason, err.path, None, utt.uid) from err
    return video, audio


def check_corpus(
    root: Path,
    splits: Sequence[str] = SPLITS,
    decode_media: bool = True,
    sample: int | None = None,
    seed: int = 0,
    av_tolerance_s: float = 0.1,
    fps: float = media.FPS,
) -> dict[str, Any]:
    """Check labels and media of a corpus; return a JSON-able summary with ``ok`` and ``problems``.

    Every label row is checked (columns, integers, transcript, paths inside the root, files present). With
    ``decode_media`` each utterance's video and audio are decoded (or a seeded random ``sample`` of them
    per split) and their lengths compared.
    """
    root = Path(root)
    summary: dict[str, Any] = {"root": str(root), "splits": {}, "problems": []}
    problems: list[dict[str, Any]] = summary["problems"]
    for split in splits:
        report = SkipReport()
        try:
            utts = read_split(root, split, "skip", report, check_media=True)
        except DataError as err:
            problems.append({"split": split, "file": str(err.file), "line": err.line, "reason": err.reason})
            if "no transcript column" not in err.reason:
                continue
            utts = read_split(root, split, "skip", report, check_media=True, require_transcript=False)
        problems.extend({"split": split, "file": f, "line": ln, "reason": r} for f, ln, _, r in report.rows)
        lengths = np.array([u.num_video_frames for u in utts], dtype=np.float64) / fps
        stats: dict[str, Any] = {
            "utterances": len(utts),
            "bad_rows": report.count,
            "hours": round(float(lengths.sum()) / 3600, 4),
            "duration_s": {
                k: round(float(f(lengths)), 3) if len(lengths) else None
                for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
            },
        }
        checked = utts
        if decode_media and sample is not None and sample < len(utts):
            pick = np.random.default_rng(seed).choice(len(utts), size=sample, replace=False)
            checked = [utts[i] for i in sorted(pick)]
        bad_media = 0
        for utt in checked if decode_media else ():
            try:
                load_media(utt, ("audio", "video"), av_tolerance_s, fps=fps)
            except DataError as err:
                bad_media += 1
                problems.append(
                    {"split": split, "file": str(err.file), "line": utt.line, "reason": err.reason}
                )
        stats["media_decoded"] = len(checked) if decode_media else 0
        stats["media_problems"] = bad_media
        summary["splits"][split] = stats
    summary["ok"] = not problems
    return summary


def format_summary(summary: dict[str, Any], max_problems: int = 50) -> str:
    """A readable multi-line report of :func:`check_corpus`'s summary."""
    lines = [f"corpus {summary['root']}"]
    for split, s in summary["splits"].items():
        d = s["duration_s"]
        lines.append(
            f"  {split:<6} {s['utterances']:>7} utts {s['hours']:>9.3f} h  duration min/median/max "
            f"{d['min']}/{d['median']}/{d['max']} s  bad rows {s['bad_rows']}  "
            f"media decoded {s['media_decoded']} (problems {s['media_problems']})"
        )
    problems = summary["problems"]
    lines.append(f"{len(problems)} problem(s)" + (":" if problems else " - corpus looks usable"))
    for p in problems[:max_problems]:
        where = p["file"] + (f", line {p['line']}" if p.get("line") not in (None, -1) else "")
        lines.append(f"  [{p['split']}] {where}: {p['reason']}")
    if len(problems) > max_problems:
        lines.append(f"  ... and {len(problems) - max_problems} more (use --json for all)")
    return "\n".join(lines)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(path, summary)
