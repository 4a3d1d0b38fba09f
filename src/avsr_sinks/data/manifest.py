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

from avsr_sinks.io import write_text_atomic

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
        label_line: int | None = None,
    ) -> None:
        """``line``: a line of ``file`` (a label file); ``label_line``: the label row of the utterance whose
        media ``file`` is."""
        self.reason, self.file, self.line, self.uid = reason, file, line, uid
        self.label_line = line if label_line is None else label_line
        where = "" if file is None else f"{file}" + ("" if line is None else f", line {line}") + ": "
        row = "" if label_line is None else f" (label row {label_line})"
        who = "" if uid is None else f"utterance {uid}{row}: "
        super().__init__(f"{where}{who}{reason}")


class SplitError(DataError):
    """A split as a whole is unusable (no label file, wrong columns, no usable utterance): leaving samples
    out cannot help, so no mode passes it."""


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
    """Rows ``(file, line, uid, reason)`` of dropped samples, ``line`` the sample's label row (also when
    ``file`` is one of its media files); repeats (same sample, later epoch) collapse."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int, str, str], None] = {}

    def add(self, file: str | os.PathLike[str], line: int | None, reason: str, uid: str = "") -> None:
        self._rows.setdefault((str(file), -1 if line is None else int(line), uid, reason))

    def add_error(self, err: DataError) -> None:
        self.add(err.file or "", err.label_line, err.reason, err.uid or "")

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


def parse_row(root: Path, fields: list[str], ncols: int, line: int) -> Utterance:
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
        raise SplitError(f"label file is missing; expected ROOT/labels/{split}.csv ({_DOCS})", path)
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
                    raise SplitError(f"has {ncols} columns; expected 4 or 5: {','.join(HEADER)}", path, line)
                if ncols == 4 and require_transcript:
                    raise SplitError(
                        "has 4 columns (auto_avsr format) and no transcript column; the LLM is trained on "
                        f"the transcript, so add it as a 5th column ({_DOCS})",
                        path,
                        line,
                    )
                if fields[0].strip().lower() == "dataset":
                    continue
            try:
                utt = parse_row(root, fields, ncols, line)
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
