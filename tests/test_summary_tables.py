"""The main table (mean +- std over seeds, best per row in bold, booktabs LaTeX), WER against SNR, and
the paper's numbers beside ours."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from avsr_sinks.report.summary import (
    load_paper_results,
    paper_vs_reproduced,
    robustness_table,
    write_main_tables,
    write_paper_tables,
    write_robustness_tables,
)
from tests.conftest import REPO


def _markdown_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def _wer(rows: list[tuple[str, str, str, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["task", "rates", "method", "seed", "condition", "wer_percent"])


@pytest.fixture()
def wer() -> pd.DataFrame:
    return _wer(
        [
            ("ASR", "a16", "baseline", 0, "clean", 20.0),
            ("ASR", "a16", "baseline", 1, "clean", 24.0),
            ("ASR", "a16", "decorr", 0, "clean", 15.0),
            ("ASR", "a16", "decorr", 1, "clean", 17.0),
            ("ASR", "a16", "baseline", 0, "babble0db", 60.0),
            ("ASR", "a16", "baseline", 1, "babble0db", 62.0),
            ("ASR", "a16", "baseline", 0, "babble5db", 40.0),
            ("ASR", "a16", "baseline", 1, "babble5db", 42.0),
            ("ASR", "a16", "baseline", 0, "babble-5_0_5db", 50.0),
            ("ASR", "a16", "baseline", 0, "text_only", 99.0),
            ("VSR", "v5", "baseline", 0, "clean", 50.0),
            ("VSR", "v5", "baseline", 1, "clean", 50.0),
            ("VSR", "v5", "act", 0, "clean", 48.0),
            ("VSR", "v5", "act", 1, "clean", 52.0),
        ]
    )


def test_main_table_mean_std_and_bold_best(tmp_path: Path, wer: pd.DataFrame) -> None:
    paths = [tmp_path / f"main.{ext}" for ext in ("csv", "md", "tex")]
    stats = write_main_tables(wer, *paths)
    asr = stats[(stats["task"] == "ASR") & (stats["method"] == "baseline")].iloc[0]
    assert asr["mean"] == pytest.approx(22.0) and asr["std"] == pytest.approx(2.8284271, abs=1e-6)
    assert asr["seeds"] == 2
    markdown = paths[1].read_text()
    assert ["ASR", "a16", "22.00 ± 2.83", "**16.00 ± 1.41**", "-"] in _markdown_rows(paths[1])
    # A tie on the mean (VSR: 50 and 50) bolds both methods.
    assert "**50.00 ± 0.00**" in markdown and "**50.00 ± 2.83**" in markdown
    assert "+- sample standard deviation" in markdown
    assert list(pd.read_csv(paths[0]).columns) == ["task", "rates", "method", "mean", "std", "seeds"]


def test_main_latex_uses_booktabs_and_is_balanced(tmp_path: Path, wer: pd.DataFrame) -> None:
    paths = [tmp_path / f"main.{ext}" for ext in ("csv", "md", "tex")]
    write_main_tables(wer, *paths)
    tex = paths[2].read_text()
    lines = tex.splitlines()
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert r"\hline" not in tex
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert r"\begin{tabular}{llrr" in tex  # two label columns, numbers right-aligned
    assert r"ASR & a16 & 22.00 $\pm$ 2.83 & \textbf{16.00 $\pm$ 1.41}" in tex
    body = lines[lines.index(r"\midrule") + 1 : lines.index(r"\bottomrule")]
    assert all(row.endswith(r"\\") and row.count("&") == 4 for row in body)
    assert tex.count("{") == tex.count("}") and r"WER (\%)" in tex


def test_single_seed_has_no_deviation(tmp_path: Path) -> None:
    wer = _wer([("ASR", "a4", "baseline", 0, "clean", 30.0), ("ASR", "a4", "decorr", 0, "clean", 31.5)])
    paths = [tmp_path / f"main.{ext}" for ext in ("csv", "md", "tex")]
    write_main_tables(wer, *paths)
    assert _markdown_rows(paths[1])[-1] == ["ASR", "a4", "**30.00**", "31.50"]
    assert "±" not in paths[1].read_text()


def test_main_table_without_clean_condition_names_the_conditions(tmp_path: Path) -> None:
    wer = _wer([("ASR", "a4", "baseline", 0, "babble0db", 30.0)])
    with pytest.raises(ValueError, match=r"no 'clean' evaluation; conditions: \['babble0db'\]"):
        write_main_tables(wer, *(tmp_path / f"main.{e}" for e in ("csv", "md", "tex")))


def test_robustness_orders_snr_and_skips_mixed_and_text_only(tmp_path: Path, wer: pd.DataFrame) -> None:
    table = robustness_table(wer)
    assert set(table["task"]) == {"ASR"}, "VSR hears no audio"
    baseline = table[table["method"] == "baseline"]
    assert list(baseline["snr_db"]) == [float("inf"), 5.0, 0.0]
    assert list(baseline["mean"]) == [22.0, 41.0, 61.0]
    write_robustness_tables(wer, tmp_path / "r.csv", tmp_path / "r.md")
    header = next(line for line in (tmp_path / "r.md").read_text().splitlines() if line.startswith("| task"))
    assert [c.strip() for c in header.strip("|").split("|")][3:] == ["clean", "babble 5 dB", "babble 0 dB"]


def test_paper_results_file_records_a_source_for_each_number() -> None:
    paper = load_paper_results(REPO / "references/paper_results.yaml")
    assert paper["source"].str.len().min() > 10 and paper["wer"].between(0, 100).all()
    headline = paper[paper["source"].str.startswith("Anand et al.")]
    assert sorted(zip(headline["task"], headline["method"], headline["wer"], strict=True)) == [
        ("asr", "baseline", 12.92),
        ("asr", "decorr", 11.5),
        ("avsr", "baseline", 4.15),
        ("avsr", "decorr", 3.72),
        ("vsr", "baseline", 45.19),
        ("vsr", "decorr", 34.08),
    ]


def test_paper_vs_reproduced_difference(tmp_path: Path, wer: pd.DataFrame) -> None:
    paper_file = tmp_path / "paper.yaml"
    paper_file.write_text(
        "results:\n"
        "  - {task: asr, rates: a16, method: decorr, wer: 11.0, dataset: LRS2, source: Table 1}\n"
        "  - {task: avsr, rates: a16v5, method: baseline, wer: 4.0, dataset: LRS3, source: Table 2}\n"
    )
    table = paper_vs_reproduced(wer, load_paper_results(paper_file))
    assert table.iloc[0][["reproduced_wer", "difference"]].tolist() == [16.0, 5.0]
    assert pd.isna(table.iloc[1]["reproduced_wer"]), "a setting the grid did not run stays empty"
    write_paper_tables(wer, paper_file, tmp_path / "p.csv", tmp_path / "p.md")
    last_row = (tmp_path / "p.md").read_text().splitlines()[-1]
    assert [c.strip() for c in last_row.strip("|").split("|")][-5:] == ["-", "-", "-", "-", "Table 2"]


def test_paper_results_without_a_source_is_rejected(tmp_path: Path) -> None:
    paper_file = tmp_path / "paper.yaml"
    paper_file.write_text("results:\n  - {task: asr, rates: a16, method: decorr, wer: 11.0, dataset: LRS2}\n")
    with pytest.raises(ValueError, match=r"paper.yaml: results\[0\] lacks source"):
        load_paper_results(paper_file)
