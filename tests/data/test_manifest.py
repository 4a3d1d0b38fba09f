"""Label CSVs: reading, header/headerless, writing, skip reports and the corpus checker."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from avsr_sinks.data.manifest import (
    DataError,
    SkipReport,
    Utterance,
    labels_path,
    read_split,
    write_split,
)
from avsr_sinks.data.validation import CorpusRules, check_corpus, format_summary
from tests.data.conftest import DATASET, LAYOUT

REPO = Path(__file__).resolve().parents[2]


def test_read_split_fields(corpus: Path) -> None:
    utts = read_split(corpus, "train")
    assert [u.num_video_frames for u in utts] == [f for _, f in LAYOUT["train"]]
    u = utts[0]
    assert isinstance(u, Utterance)
    assert u.uid == f"{DATASET}/train/spk0/train_000"
    assert u.video_path == corpus / DATASET / "train/spk0/train_000.mp4"
    assert u.audio_path == u.video_path.with_suffix(".wav")
    assert u.token_ids == (7,) and u.transcript == "HELLO" and u.line == 2


def test_headerless_file_reads_the_same(corpus: Path) -> None:
    with_header = read_split(corpus, "val")
    write_split(corpus, "val", with_header, header=False)
    assert labels_path(corpus, "val").read_text().startswith(DATASET + ",")
    again = read_split(corpus, "val")
    assert [(u.uid, u.transcript, u.line + 1) for u in again] == [
        (u.uid, u.transcript, u.line) for u in with_header
    ]


def test_four_column_file_says_transcript_is_missing(corpus: Path) -> None:
    utts = read_split(corpus, "test")
    rows = [(u.dataset, u.relative_path, u.num_video_frames, u.token_ids) for u in utts]
    write_split(corpus, "test", rows, header=False)
    with pytest.raises(DataError, match=r"test\.csv, line 1: has 4 columns .* no transcript column"):
        read_split(corpus, "test")
    loose = read_split(corpus, "test", require_transcript=False)
    assert [u.transcript for u in loose] == ["", "", ""]


def test_missing_label_file(corpus: Path) -> None:
    with pytest.raises(DataError, match=r"labels/nope\.csv: label file is missing"):
        read_split(corpus, "nope")


def test_skip_report_dedupes_and_writes_atomically(tmp_path: Path) -> None:
    report = SkipReport()
    report.add("a.csv", 3, "bad", "u1")
    report.add("a.csv", 3, "bad", "u1")
    report.record_batch({"skipped": [("b.mp4", 4, "corrupt", "u2")]})
    assert report.count == 2
    report.write(tmp_path / "out" / "skipped.csv")
    rows = list(csv.reader((tmp_path / "out" / "skipped.csv").open()))
    assert rows == [
        ["file", "line", "uid", "reason"],
        ["a.csv", "3", "u1", "bad"],
        ["b.mp4", "4", "u2", "corrupt"],
    ]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["skipped.csv"]


def test_check_corpus_on_valid_corpus(corpus: Path) -> None:
    summary = check_corpus(corpus, CorpusRules())
    assert summary["ok"], summary["problems"]
    train = summary["splits"]["train"]
    assert train["rows"] == train["usable"] == 4 and train["refused"] == 0
    assert train["hours"] == pytest.approx(100 / 25 / 3600, abs=1e-4)
    assert train["max_duration_s"] == 1.2
    assert "0 problem(s)" in format_summary(summary)


def run_cli(args: list[str]) -> int:
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    try:
        import check_corpus as cli
    finally:
        sys.path.pop(0)
    return cli.main(args)


def test_cli_exit_codes_and_json(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([str(corpus), "--json", str(tmp_path / "ok.json")]) == 0, capsys.readouterr()
    assert json.loads((tmp_path / "ok.json").read_text())["ok"] is True
    (corpus / DATASET / "val/spk5/val_001.wav").unlink()
    (corpus / DATASET / "test/spk7/test_000.mp4").write_bytes(b"\x00" * 100)
    assert run_cli([str(corpus), "--json", str(tmp_path / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert "val_001.wav is missing" in out and "test_000.mp4" in out and "corrupt" in out
    problems = json.loads((tmp_path / "bad.json").read_text())["problems"]
    assert {p["split"] for p in problems} == {"val", "test"}
    assert run_cli([str(tmp_path / "absent")]) == 2
