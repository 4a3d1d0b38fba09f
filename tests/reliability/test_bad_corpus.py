"""Catalogue, corpus: a damaged corpus meets the corpus check stage (a fresh process, as the pipeline runs
it), which every later stage reads. In error mode the stage stops with a message naming the file and what
to do and leaves no output; `check_corpus.py` refuses the same corpus with the same message; in skip mode
the stage leaves exactly the damaged sample out and lists it with that reason. The reader-level checks are
in tests/data/test_bad_input.py and tests/data/test_validation.py."""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from avsr_sinks.data import media
from avsr_sinks.data.validation import read_skip_report
from tests.conftest import REPO
from tests.data.conftest import DATASET, _pristine_corpus, corpus, moving_square, tone  # noqa: F401
from tests.data.test_bad_input import append_rows
from tests.data.test_validation import (
    replace_label,
    unknown_char_llm,  # noqa: F401 (fixture)
    write_vfr_video,
)
from tests.reliability.scripts import assert_fails_cleanly, run_script

FIX = r"repair or remove what is named above, or set corpus\.on_bad_sample: skip"
SPLIT_FIX = r"repair the label file or the corpus folder named above"
TRAIN_002 = "tiny/train/spk2/train_002"


@dataclass(frozen=True)
class Damage:
    """A damage to the tiny corpus: the message it must produce (regex), the split it is in, and the
    utterance skip mode leaves out (None: the split as a whole is unusable, in every mode)."""

    apply: Callable[[Path], None]
    names: str
    split: str = "train"
    skipped_uid: str | None = TRAIN_002
    text_pass: bool = False  # found by the tokenizer pass


def _write_av(root: Path, rel: str, frames: np.ndarray, audio: np.ndarray, fps: int = 25) -> None:
    video = root / DATASET / rel
    media.write_video(video, frames, fps=fps)
    media.write_audio(video.with_suffix(".wav"), audio)


def _missing(root: Path) -> None:
    (root / DATASET / "train/spk2/train_002.mp4").unlink()


def _corrupt_audio(root: Path) -> None:
    (root / DATASET / "train/spk2/train_002.wav").write_bytes(b"RIFF garbage, not audio")


def _truncated_audio(root: Path) -> None:
    path = root / DATASET / "train/spk2/train_002.wav"
    path.write_bytes(path.read_bytes()[:40])


def _malformed_row(root: Path) -> None:
    append_rows(root, "train", f"{DATASET},train/spk0/x.mp4,notanumber,1,hello".encode())


def _escaping_path(root: Path) -> None:
    append_rows(root, "train", f"{DATASET},../../outside.mp4,25,1,hello".encode())


def _non_utf8(root: Path) -> None:
    append_rows(root, "train", f"{DATASET},train/spk0/train_000.mp4,25,1,".encode() + b"caf\xe9")


def _empty_transcript(root: Path) -> None:
    replace_label(root, "train", 2, transcript="")


def _missing_labels(root: Path) -> None:
    (root / "labels" / "train.csv").unlink()


def _empty_label_file(root: Path) -> None:
    (root / "labels" / "train.csv").write_bytes(b"")


def _header_only(root: Path) -> None:
    (root / "labels" / "train.csv").write_text(
        "dataset,relative_path,length_in_video_frames,token_ids,transcript\n"
    )


def _also_in_test(root: Path) -> None:
    line = (root / "labels" / "train.csv").read_text().splitlines()[3]  # train_002's row
    append_rows(root, "test", line.encode())


def _zero_width_space(root: Path) -> None:
    replace_label(root, "train", 2, transcript="\u200b")


def _lone_bom(root: Path) -> None:
    replace_label(root, "train", 2, transcript="\ufeff")


def _nul_in_transcript(root: Path) -> None:
    replace_label(root, "train", 2, transcript="HELLO\x00WORLD")


def _cjk_transcript(root: Path) -> None:
    replace_label(root, "train", 2, transcript="HELLO 世界")


def _audio_too_short(root: Path) -> None:  # 0.05 s of audio against 1.2 s of video
    _write_av(root, "train/spk2/train_002.mp4", moving_square(30), tone(800))


def _label_frames_wrong(root: Path) -> None:
    replace_label(root, "train", 2, frames=60)


def _video_30_fps(root: Path) -> None:
    _write_av(root, "train/spk2/train_002.mp4", moving_square(36), tone(19200), fps=30)


def _video_15_fps(root: Path) -> None:
    _write_av(root, "train/spk2/train_002.mp4", moving_square(18), tone(19200), fps=15)


def _variable_frame_rate(root: Path) -> None:
    write_vfr_video(root / DATASET / "train/spk2/train_002.mp4", moving_square(30))


def _longer_than_window(root: Path) -> None:  # 12 s, consistent, against the default 10 s window
    _write_av(root, "train/spk2/train_002.mp4", moving_square(300), tone(192000))
    replace_label(root, "train", 2, frames=300)


def _audio_renamed_video(root: Path) -> None:  # a .wav saved under the .mp4 name: no video stream
    path = root / DATASET / "train/spk2/train_002"
    path.with_suffix(".mp4").write_bytes(path.with_suffix(".wav").read_bytes())


def _duplicate_row(root: Path) -> None:
    line = (root / "labels" / "train.csv").read_text().splitlines()[3]
    append_rows(root, "train", line.encode())


def _every_row_bad(root: Path) -> None:
    for i in range(4):
        (root / DATASET / f"train/spk{i}/train_{i:03d}.wav").write_bytes(b"not audio")


def _four_column_export(root: Path) -> None:  # auto_avsr's own label files: no transcript column
    rows = (root / "labels" / "train.csv").read_text().splitlines()[1:]
    (root / "labels" / "train.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")


DAMAGES = {
    "missing_media": Damage(_missing, r"train_002\.mp4 is missing"),
    "corrupt_audio": Damage(_corrupt_audio, r"train_002\.wav: utterance .*corrupt"),
    "truncated_audio": Damage(_truncated_audio, r"train_002\.wav: utterance "),
    "malformed_row": Damage(_malformed_row, r"train\.csv, line 6: .*not an integer", skipped_uid=None),
    "escaping_path": Damage(
        _escaping_path, r"train\.csv, line 6: .*escapes the corpus root", skipped_uid=None
    ),
    "non_utf8": Damage(_non_utf8, r"train\.csv, line 6: is not valid UTF-8", skipped_uid=None),
    "empty_transcript": Damage(_empty_transcript, r"train\.csv, line 4: transcript is empty"),
    "missing_labels": Damage(_missing_labels, r"train\.csv: label file is missing", skipped_uid=None),
    "empty_label_file": Damage(_empty_label_file, r"train\.csv: holds no utterance", skipped_uid=None),
    "header_only": Damage(_header_only, r"train\.csv: holds no utterance", skipped_uid=None),
    "also_in_test": Damage(_also_in_test, r"train\.csv, line 4: utterance .* is also in .*test\.csv, line 5"),
    "zero_width_space": Damage(_zero_width_space, r"train\.csv, line 4: .*U\+200B \(ZERO WIDTH SPACE\)"),
    "lone_bom": Damage(_lone_bom, r"train\.csv, line 4: .*U\+FEFF \(ZERO WIDTH NO-BREAK SPACE\)"),
    "nul_in_transcript": Damage(_nul_in_transcript, r"train\.csv, line 4: .*U\+0000"),
    "cjk_for_a_tokenizer_without_it": Damage(
        _cjk_transcript, r"train\.csv, line 4: .*\('世界' would become its unknown token\)", text_pass=True
    ),
    "audio_far_shorter_than_video": Damage(_audio_too_short, r"train_002\.mp4: .*lasts 0\.050 s"),
    "label_frame_count_wrong": Damage(
        _label_frames_wrong, r"train_002\.mp4: .*30 frames but the label says 60"
    ),
    "video_30_fps": Damage(_video_30_fps, r"train_002\.mp4: .*is 30 fps; the pipeline reads 25 fps"),
    "video_15_fps": Damage(_video_15_fps, r"train_002\.mp4: .*is 15 fps; the pipeline reads 25 fps"),
    "variable_frame_rate": Damage(_variable_frame_rate, r"train_002\.mp4: .*has a variable frame rate"),
    "longer_than_window": Damage(
        _longer_than_window, r"train_002\.wav: .*12\.00 s, longer than .* audio_encoder\.window_seconds"
    ),
    "audio_saved_as_video": Damage(
        _audio_renamed_video, r"train_002\.mp4: .*'wav' \(no video stream, 1 audio stream\)"
    ),
    "duplicate_row": Damage(_duplicate_row, r"train\.csv, line 6: duplicate utterance", skipped_uid=None),
    "every_row_bad": Damage(_every_row_bad, r"train_000\.wav: utterance ", skipped_uid=None),
    "four_column_export": Damage(_four_column_export, r"train\.csv, line 1: has 4 columns", skipped_uid=None),
}
# Damages refused in every mode: the split as a whole, or (every_row_bad) nothing left after skipping.
WHOLE_SPLIT = {"missing_labels", "empty_label_file", "header_only", "every_row_bad", "four_column_export"}


def overlay(tmp_path: Path, llm: Path, mode: str) -> Path:
    path = tmp_path / f"{mode}.yaml"
    path.write_text(f"corpus:\n  on_bad_sample: {mode}\nllm:\n  path: {llm}\n")
    return path


def run_stage(root: Path, damage: Damage, config: Path, out: Path):
    """The corpus check stage that finds this damage: the media pass, then (text damages) the text pass."""
    params = ["--params", REPO / "params.yaml", config, "--threads", "1", "--corpus-dir", root]
    usable, skipped = out / f"{damage.split}.media.csv", out / f"{damage.split}.media-skipped.csv"
    result = run_script(
        "check_corpus_media.py",
        [*params, "--split", damage.split, "--out-usable", usable, "--out-skipped", skipped],
    )
    if result.returncode or not damage.text_pass:
        return result, usable, skipped
    final, report = out / f"{damage.split}.csv", out / f"{damage.split}.skipped.csv"
    llm = config.read_text().split("path: ")[1].strip()
    result = run_script(
        "check_corpus_text.py",
        [*params, "--split", damage.split, "--media-usable", usable, "--media-skipped", skipped]
        + ["--llm-dir", llm, "--out-usable", final, "--out-skipped", report, "--out-card", out / "card.json"],
    )
    return result, final, report


def run_checker(root: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    try:
        import check_corpus
    finally:
        sys.path.pop(0)
    code = check_corpus.main([str(root), "--params", str(REPO / "params.yaml"), str(config)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGES)
def test_damaged_corpus_is_refused_alike_by_the_stage_and_the_checker(
    corpus: Path,  # noqa: F811
    unknown_char_llm: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    damage = DAMAGES[case]
    damage.apply(corpus)
    strict = overlay(tmp_path, unknown_char_llm, "error")
    out = tmp_path / "checked"
    result, usable, report = run_stage(corpus, damage, strict, out)
    whole_split = case in WHOLE_SPLIT and case != "every_row_bad"  # that one stops at its first bad sample
    assert_fails_cleanly(result, damage.names, SPLIT_FIX if whole_split else FIX, [usable, report])
    assert whole_split != ("on_bad_sample: skip" in result.stderr), "skip mode advised where it cannot help"
    message = re.search(r"^error: (.*)$", result.stderr, re.MULTILINE).group(1)
    code, printed = run_checker(corpus, strict, capsys)
    assert code == 1 and message in printed, f"the checker did not say\n{message}\nit said:\n{printed}"


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in DAMAGES if c not in WHOLE_SPLIT])
def test_skip_mode_leaves_out_the_damaged_sample_and_lists_it(
    corpus: Path,  # noqa: F811
    unknown_char_llm: Path,  # noqa: F811
    tmp_path: Path,
    case: str,
) -> None:
    damage = DAMAGES[case]
    damage.apply(corpus)
    result, usable, report = run_stage(corpus, damage, overlay(tmp_path, unknown_char_llm, "skip"), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with usable.open() as fh:
        kept = {f"{r['dataset']}/{r['relative_path'].removesuffix('.mp4')}" for r in csv.DictReader(fh)}
    skipped = read_skip_report(report)
    assert len(skipped) == 1 and re.search(damage.names, str(skipped[0])), [str(e) for e in skipped]
    pristine = {f"tiny/train/spk{i}/train_{i:03d}" for i in range(4)}
    assert kept == pristine - {damage.skipped_uid}


@pytest.mark.slow
def test_a_missing_corpus_root_is_named_as_such(
    tmp_path: Path,
    unknown_char_llm: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    absent, strict = tmp_path / "lrs3", overlay(tmp_path, unknown_char_llm, "error")
    result, usable, report = run_stage(absent, DAMAGES["missing_media"], strict, tmp_path / "checked")
    names = rf"{absent}: corpus root is not a folder; set corpus\.root"
    assert_fails_cleanly(result, names, SPLIT_FIX, [usable, report])
    assert "label file is missing" not in result.stderr and "on_bad_sample" not in result.stderr
    code, printed = run_checker(absent, strict, capsys)
    assert code == 2 and re.search(names, printed)
