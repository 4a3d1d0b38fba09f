"""The corpus validation layer: every check a sample must pass before a stage reads it, in one place.

Two passes per split, each a pipeline stage whose output lists the usable utterances, so that every later
stage reads the same list and a sample skipped is skipped everywhere:

* :func:`check_split` (labels and media): the label rows (columns, integers, paths inside the root,
  transcript characters, duplicates), the utterance not also in a later split, and each utterance's media
  decoded and compared (video frame rate and constant frame timing, frame count against the label, audio
  duration against the video, audio length against the audio encoder's window).
* :func:`check_transcripts` (against the LLM's tokenizer): no character the tokenizer maps to its unknown
  token. A pass of its own so that changing the LLM does not invalidate the feature caches.

``corpus.on_bad_sample: error`` stops at the first problem with a :class:`DataError` naming the file, the
line and what to change; ``skip`` drops the sample and lists it in the split's skip report. Problems of a
split as a whole (no label file, no usable utterance) always stop. ``workflow_scripts/check_corpus.py``
runs the same two passes and lists every problem instead of stopping at the first.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avsr_sinks.data import media
from avsr_sinks.data.manifest import (
    HEADER,
    SPLITS,
    DataError,
    SkipReport,
    SplitError,
    Utterance,
    labels_path,
    parse_row,
    read_split,
)
from avsr_sinks.io import write_json_atomic, write_text_atomic

# A split's utterances may not reappear in a later one: the evaluation splits must be unseen.
LATER_SPLITS = {"train": ("val", "test"), "val": ("test",), "test": ()}


@dataclass(frozen=True)
class CorpusRules:
    """What a usable sample is (avsr_sinks.workflow.corpus_check.corpus_rules reads it from params)."""

    on_bad_sample: str = "error"
    av_tolerance_s: float = 0.1
    audio_window_s: float | None = None  # the audio encoder's input window; None: no limit
    fps: float = media.FPS
    sample_rate: int = media.SAMPLE_RATE


@dataclass
class SplitCheck:
    """One split's verdict: the usable utterances and the refused samples (in label-file order)."""

    split: str
    rows: int = 0
    usable: list[Utterance] = field(default_factory=list)
    problems: list[DataError] = field(default_factory=list)


def invisible_character(text: str) -> str | None:
    """The reason a transcript is unusable for its characters, or None.

    Control, format (zero-width space, BOM, soft hyphen), private-use and unassigned characters are
    invisible in an editor, so a transcript made of them looks empty and one containing them trains the
    LLM on text no reader sees.
    """
    for i, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn"):
            name = unicodedata.name(char, "unnamed")
            return (
                f"transcript has an invisible or control character U+{ord(char):04X} ({name}) at position "
                f"{i + 1}; remove it from the label file"
            )
    if not any(char.isalnum() for char in text):
        return f"transcript {text!r} has no letter or digit; every utterance needs its words"
    return None


def _rows_of(root: Path, split: str) -> tuple[list[Utterance], SkipReport]:
    report = SkipReport()
    return read_split(root, split, "skip", report, check_media=True), report


def _later_occurrences(root: Path, split: str) -> dict[str, tuple[Path, int]]:
    """uid -> (label file, line) of each utterance of the splits after ``split``, where they exist."""
    seen: dict[str, tuple[Path, int]] = {}
    for later in LATER_SPLITS[split]:
        if labels_path(root, later).is_file():
            for utt in read_split(root, later, "skip", check_media=False):
                seen.setdefault(utt.uid, (labels_path(root, later), utt.line))
    return seen


def check_media(utt: Utterance, rules: CorpusRules) -> tuple[np.ndarray, np.ndarray]:
    """Decode one utterance's video and audio and check them against each other, the label and the
    encoder window; returns ``(video, audio)`` or raises :class:`DataError` naming the file."""
    try:
        timing = media.video_timing(utt.video_path)
        if not timing.constant:
            raise media.MediaError(
                utt.video_path,
                f"has a variable frame rate (frame intervals from {timing.min_interval_s * 1000:.1f} to "
                f"{timing.max_interval_s * 1000:.1f} ms)",
                f"re-encode it at a constant rate: ffmpeg -i IN -r {rules.fps:g} -fps_mode cfr OUT",
            )
        if abs(timing.fps - rules.fps) > 0.01:
            raise media.MediaError(
                utt.video_path,
                f"is {round(timing.fps, 2):g} fps; the pipeline reads {rules.fps:g} fps mouth crops",
                f"convert it, e.g. ffmpeg -i IN -r {rules.fps:g} OUT",
            )
        video = media.read_video(utt.video_path)
        if abs(len(video) - utt.num_video_frames) / rules.fps > rules.av_tolerance_s:
            raise media.MediaError(
                utt.video_path,
                f"has {len(video)} frames but the label says {utt.num_video_frames}",
                "fix length_in_video_frames in the label file",
            )
        audio = media.read_audio(utt.audio_path, rules.sample_rate)
        media.check_av_agreement(
            utt.video_path,
            utt.audio_path,
            len(video),
            len(audio),
            rules.av_tolerance_s,
            rules.fps,
            rules.sample_rate,
        )
        seconds = len(audio) / rules.sample_rate
        if rules.audio_window_s is not None and seconds > rules.audio_window_s:
            raise media.MediaError(
                utt.audio_path,
                f"lasts {seconds:.2f} s, longer than the audio encoder's {rules.audio_window_s:g} s window",
                "raise audio_encoder.window_seconds (Whisper takes up to 30) or cut the clip",
            )
    except media.MediaError as err:
        raise DataError(err.reason, err.path, None, utt.uid, label_line=utt.line) from err
    return video, audio


def check_split(
    root: Path, split: str, rules: CorpusRules, collect_all: bool = False, decode: bool = True
) -> SplitCheck:
    """The labels and media pass over one split (see the module's docstring).

    ``collect_all`` lists every problem (the checker) whatever ``on_bad_sample`` says; otherwise error
    mode raises the first problem, label problems before media ones, so that a bad row stops the run
    before any decoding.
    """
    root = Path(root)
    check_root(root)
    rows, report = _rows_of(root, split)
    result = SplitCheck(split, rows=len(rows) + report.count)
    problems = [
        DataError(reason, file, None if line == -1 else line, uid or None)
        for file, line, uid, reason in report.rows
    ]
    later = _later_occurrences(root, split)
    candidates = []
    for utt in rows:
        reason = invisible_character(utt.transcript)
        if reason is None and utt.uid in later:
            file, line = later[utt.uid]
            reason = (
                f"is also in {file}, line {line}: an utterance used for training or validation must not be "
                "in a later split; remove it from one of them"
            )
        if reason is not None:
            problems.append(DataError(reason, labels_path(root, split), utt.line, utt.uid))
        else:
            candidates.append(utt)
    problems.sort(key=lambda err: err.label_line or 0)
    _stop_at_first(problems, rules, collect_all)
    for utt in candidates:
        try:
            if decode:
                check_media(utt, rules)
            result.usable.append(utt)
        except DataError as err:
            problems.append(err)
            _stop_at_first(problems, rules, collect_all)
    result.problems = sorted(problems, key=lambda err: err.label_line or 0)
    if not result.usable and not collect_all:
        raise _nothing_usable(root, split, result)
    return result


def check_transcripts(
    utterances: Sequence[Utterance],
    tokenize: Callable[[str], list[int]],
    unknown_id: int | None,
    rules: CorpusRules,
    root: Path,
    split: str,
    collect_all: bool = False,
) -> SplitCheck:
    """The tokenizer pass: a transcript with characters the LLM's tokenizer maps to its unknown token is a
    bad sample (byte-level tokenizers, Llama 3's and SmolLM2's, have none)."""
    result = SplitCheck(split, rows=len(utterances))
    for utt in utterances:
        ids = tokenize(utt.transcript) if unknown_id is not None else []
        if unknown_id in ids:
            unknown = "".join(ch for ch in dict.fromkeys(utt.transcript) if unknown_id in tokenize(ch))
            result.problems.append(
                DataError(
                    f"transcript has characters the LLM's tokenizer cannot represent ({unknown!r} would "
                    "become its unknown token); transliterate them or use an LLM whose tokenizer covers them",
                    labels_path(root, split),
                    utt.line,
                    utt.uid,
                )
            )
            _stop_at_first(result.problems, rules, collect_all)
        else:
            result.usable.append(utt)
    if not result.usable and not collect_all:
        raise _nothing_usable(root, split, result)
    return result


def check_root(root: Path) -> None:
    """A missing corpus root is a problem of the configuration, not of a sample."""
    if str(root).startswith("~"):
        raise SplitError(
            "corpus root starts with '~', which is not expanded; write the full path in corpus.root", root
        )
    if not Path(root).is_dir():
        raise SplitError(
            "corpus root is not a folder; set corpus.root to the folder that holds labels/ and the media",
            root,
        )


def _stop_at_first(problems: list[DataError], rules: CorpusRules, collect_all: bool) -> None:
    if problems and rules.on_bad_sample == "error" and not collect_all:
        first = problems[0]
        raise first


def _nothing_usable(root: Path, split: str, result: SplitCheck) -> SplitError:
    what = "holds no utterance" if result.rows == 0 else f"has no usable utterance ({result.rows} refused)"
    return SplitError(
        f"{what}; every split needs at least one (see its skip report for the reasons)",
        labels_path(root, split),
    )


# The usable list and the skip report: the files that travel between the validation and the other stages.

CHECKED_HEADER = ("line", *HEADER)


def write_usable(path: Path, utterances: Iterable[Utterance]) -> None:
    """The usable utterances as label rows with their original line numbers (CSV, atomically)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CHECKED_HEADER)
    for u in utterances:
        writer.writerow(
            (
                u.line,
                u.dataset,
                u.relative_path,
                u.num_video_frames,
                " ".join(map(str, u.token_ids)),
                u.transcript,
            )
        )
    write_text_atomic(path, buf.getvalue())


def read_usable(path: Path, root: Path) -> list[Utterance]:
    """The list :func:`write_usable` wrote, with media paths under ``root``."""
    path = Path(path)
    if not path.is_file():
        raise SplitError("the list of usable utterances is missing; run the corpus check stage first", path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0]) != CHECKED_HEADER:
        raise SplitError(f"is not a list of usable utterances (header {CHECKED_HEADER})", path)
    return [parse_row(Path(root), fields[1:], len(HEADER), int(fields[0])) for fields in rows[1:]]


def write_skip_report(path: Path, problems: Iterable[DataError]) -> None:
    report = SkipReport()
    for err in problems:
        report.add_error(err)
    report.write(path)


def read_skip_report(path: Path) -> list[DataError]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    found = []
    for r in rows:
        line = None if r["line"] == "-1" else int(r["line"])
        in_labels = r["file"].endswith(".csv")  # else a media file, and line is its utterance's label row
        found.append(
            DataError(r["reason"], r["file"], line if in_labels else None, r["uid"] or None, label_line=line)
        )
    return found


def finish_split(
    text_check: SplitCheck, media_skipped: Path, out_usable: Path, out_skipped: Path, out_card: Path
) -> dict[str, Any]:
    """Write the split's final usable list, its skip report (both passes, in label-file order) and its
    counts; returns the counts."""
    skipped = sorted(
        [*read_skip_report(media_skipped), *text_check.problems], key=lambda e: e.label_line or 0
    )
    write_skip_report(out_skipped, skipped)
    write_usable(out_usable, text_check.usable)
    frames = sum(u.num_video_frames for u in text_check.usable)
    card = {
        "split": text_check.split,
        "rows": text_check.rows + len(skipped) - len(text_check.problems),
        "usable": len(text_check.usable),
        "skipped": len(skipped),
        "hours": round(frames / media.FPS / 3600, 4),
    }
    write_json_atomic(out_card, card)
    return card


def check_corpus(
    root: Path, rules: CorpusRules, splits: Sequence[str] = SPLITS, tokenizer: Any = None
) -> dict[str, Any]:
    """Both passes over every split, listing every problem (``workflow_scripts/check_corpus.py``): a
    JSON-able summary with ``ok``, per-split counts and ``problems`` (each with the stages' message)."""
    summary: dict[str, Any] = {"root": str(root), "splits": {}, "problems": []}
    check_root(Path(root))
    for split in splits:
        try:
            check = check_split(root, split, rules, collect_all=True)
        except DataError as err:  # the split as a whole: no label file, wrong columns
            summary["problems"].append({"split": split, "message": str(err)})
            continue
        problems = list(check.problems)
        usable = check.usable
        if tokenizer is not None:
            text = check_transcripts(usable, *tokenizer_pass(tokenizer), rules, root, split, collect_all=True)
            problems += text.problems
            usable = text.usable
        if not usable:
            problems.append(_nothing_usable(Path(root), split, check))
        problems.sort(key=lambda err: err.label_line or 0)
        summary["problems"] += [{"split": split, "message": str(err)} for err in problems]
        seconds = np.array([u.num_video_frames for u in usable], dtype=np.float64) / rules.fps
        summary["splits"][split] = {
            "rows": check.rows,
            "usable": len(usable),
            "refused": len(problems),
            "hours": round(float(seconds.sum()) / 3600, 4),
            "max_duration_s": round(float(seconds.max()), 3) if len(seconds) else None,
        }
    summary["tokenizer_checked"] = tokenizer is not None
    summary["ok"] = not summary["problems"]
    return summary


def tokenizer_pass(tokenizer: Any) -> tuple[Callable[[str], list[int]], int | None]:
    """The tokenize function and unknown-token id :func:`check_transcripts` takes, from a HF tokenizer."""
    return (lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]), tokenizer.unk_token_id


def format_summary(summary: dict[str, Any], max_problems: int = 50) -> str:
    """A readable multi-line report of :func:`check_corpus`'s summary."""
    lines = [f"corpus {summary['root']}"]
    for split, s in summary["splits"].items():
        lines.append(
            f"  {split:<6} {s['rows']:>7} rows, {s['usable']:>7} usable ({s['hours']:.3f} h, longest "
            f"{s['max_duration_s']} s), {s['refused']} refused"
        )
    if not summary["tokenizer_checked"]:
        lines.append("  (transcripts not checked against the LLM's tokenizer: its folder is not there yet)")
    problems = summary["problems"]
    lines.append(f"{len(problems)} problem(s)" + (":" if problems else " - corpus looks usable"))
    lines += [f"  [{p['split']}] {p['message']}" for p in problems[:max_problems]]
    if len(problems) > max_problems:
        lines.append(f"  ... and {len(problems) - max_problems} more (use --json for all)")
    return "\n".join(lines)
