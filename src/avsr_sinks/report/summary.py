"""Summary tables from the per-evaluation WER table: the main table (task x rate x method), WER against
SNR for audio tasks, and the paper's published numbers beside ours.

Each table is written as CSV (numbers, for machines), Markdown (for people) and, for the main table,
LaTeX with booktabs rules (pandas' Styler), ready to paste into a paper.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from avsr_sinks.data.noise import TEXT_ONLY, parse_condition
from avsr_sinks.io import write_text_atomic
from avsr_sinks.settings.grid import METHODS

SETTING = ["task", "rates"]
MAIN_CONDITION = "clean"
PAPER_KEYS = ("task", "rates", "method", "wer", "dataset", "source")


def seed_statistics(wer: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and sample standard deviation of ``wer_percent`` over seeds (std is NaN with one seed)."""
    stats = wer.groupby(by, sort=True)["wer_percent"].agg(mean="mean", std="std", seeds="count")
    return stats.reset_index()


def _cell(mean: float, std: float, plus_minus: str, bold: bool, bold_format: str) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f}{plus_minus}{std:.2f}"
    return bold_format.format(text) if bold else text


def _formatted(stats: pd.DataFrame, plus_minus: str, bold_format: str) -> pd.DataFrame:
    """One row per setting, one column per method; the lowest mean WER of each row in bold."""
    mean = stats.pivot(index=SETTING, columns="method", values="mean")
    std = stats.pivot(index=SETTING, columns="method", values="std")
    methods = [m for m in METHODS if m in mean.columns]
    mean, std = mean[methods], std[methods]
    best = mean.min(axis=1)
    cells = {
        method: [
            _cell(m, s, plus_minus, m == best[row], bold_format)
            for row, m, s in zip(mean.index, mean[method], std[method], strict=True)
        ]
        for method in methods
    }
    return pd.DataFrame(cells, index=mean.index).reset_index()


def main_table(wer: pd.DataFrame, condition: str = MAIN_CONDITION) -> pd.DataFrame:
    """WER per task x rates x method on ``condition``: mean, std and seed count (long form)."""
    chosen = wer[wer["condition"] == condition]
    if chosen.empty:
        conditions = sorted(set(wer["condition"]))
        raise ValueError(f"the WER table has no {condition!r} evaluation; conditions: {conditions}")
    return seed_statistics(chosen, [*SETTING, "method"])


def main_latex(stats: pd.DataFrame, caption: str) -> str:
    table = _formatted(stats, r" $\pm$ ", r"\textbf{{{}}}")
    return table.style.hide(axis="index").to_latex(
        hrules=True,  # \toprule, \midrule, \bottomrule: needs \usepackage{booktabs}
        column_format="ll" + "r" * (len(table.columns) - 2),
        caption=caption,
        position_float="centering",
    )


def write_main_tables(wer: pd.DataFrame, csv_path: Path, md_path: Path, tex_path: Path) -> pd.DataFrame:
    stats = main_table(wer)
    seeds = sorted(set(stats["seeds"]))
    note = (
        f"WER (%) on the {MAIN_CONDITION} test set; mean over {'/'.join(map(str, seeds))} seed(s)"
        + (", +- sample standard deviation" if max(seeds) > 1 else "")
        + "; lowest per row in bold."
    )
    write_text_atomic(csv_path, stats.to_csv(index=False))
    # disable_numparse keeps the two decimals that tabulate would strip from "31.50"
    markdown = _formatted(stats, " ± ", "**{}**").to_markdown(index=False, disable_numparse=True)
    write_text_atomic(md_path, f"# Word error rate by task, rate and method\n\n{note}\n\n{markdown}\n")
    write_text_atomic(tex_path, main_latex(stats, note.replace("+-", r"$\pm$").replace("%", r"\%")))
    return stats


def robustness_table(wer: pd.DataFrame) -> pd.DataFrame:
    """WER against SNR for every experiment setting that hears audio: clean and each single-SNR noise
    condition evaluated, mean over seeds (long form, one row per setting x method x condition)."""
    rows = []
    for condition in sorted(set(wer["condition"])):
        if condition == TEXT_ONLY:
            continue
        noise = parse_condition(condition)
        if noise is not None and len(noise[1]) != 1:
            continue  # a condition that mixes several SNRs has no single point on the axis
        chosen = wer[(wer["condition"] == condition) & (wer["task"] != "VSR")]
        stats = seed_statistics(chosen, [*SETTING, "method"])
        stats.insert(3, "noise", "clean" if noise is None else noise[0])
        stats.insert(4, "snr_db", math.inf if noise is None else noise[1][0])
        rows.append(stats)
    if not rows:
        return pd.DataFrame(columns=[*SETTING, "method", "noise", "snr_db", "mean", "std", "seeds"])
    table = pd.concat(rows, ignore_index=True)
    order = [*SETTING, "method", "snr_db", "noise"]
    return table.sort_values(order, ascending=[True, True, True, False, True])  # clean, then loud to quiet


def write_robustness_tables(wer: pd.DataFrame, csv_path: Path, md_path: Path) -> pd.DataFrame:
    table = robustness_table(wer)
    write_text_atomic(csv_path, table.to_csv(index=False))
    wide = table.assign(
        condition=[
            "clean" if noise == "clean" else f"{noise} {snr:g} dB"
            for noise, snr in zip(table["noise"], table["snr_db"], strict=True)
        ],
        wer=[_cell(m, s, " ± ", False, "{}") for m, s in zip(table["mean"], table["std"], strict=True)],
    )
    order = list(dict.fromkeys(wide["condition"]))
    wide = wide.pivot(index=[*SETTING, "method"], columns="condition", values="wer")[order].reset_index()
    write_text_atomic(
        md_path,
        "# Word error rate (%) against SNR (audio tasks)\n\nMean over seeds (± sample standard deviation when"
        " there are several), per noise condition in `evaluate.conditions`.\n\n"
        + wide.fillna("-").to_markdown(index=False, disable_numparse=True)
        + "\n",
    )
    return table


def load_paper_results(path: Path) -> pd.DataFrame:
    """The paper's published numbers; each entry must name its task, rates, method, WER, dataset, source."""
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    entries = document.get("results") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list under the key 'results'")
    for index, entry in enumerate(entries):
        missing = [k for k in PAPER_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ValueError(
                f"{path}: results[{index}] lacks {', '.join(missing)} (each entry needs {PAPER_KEYS})"
            )
        if entry["method"] not in METHODS:
            raise ValueError(
                f"{path}: results[{index}].method = {entry['method']!r}; expected one of {METHODS}"
            )
    return pd.DataFrame(entries, columns=list(PAPER_KEYS))


def paper_vs_reproduced(wer: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Each published number beside our clean mean WER for the same task, rates and method (NaN when the
    grid does not run that setting) and the difference, ours minus the paper's."""
    ours = main_table(wer).assign(task=lambda t: t["task"].str.lower())
    table = paper.merge(ours, on=["task", "rates", "method"], how="left")
    table = table.rename(columns={"wer": "paper_wer", "mean": "reproduced_wer", "std": "reproduced_std"})
    table["difference"] = (table["reproduced_wer"] - table["paper_wer"]).round(2)
    columns = ["task", "rates", "method", "dataset", "paper_wer", "reproduced_wer", "reproduced_std", "seeds"]
    return table[[*columns, "difference", "source"]]


def write_paper_tables(wer: pd.DataFrame, paper_path: Path, csv_path: Path, md_path: Path) -> pd.DataFrame:
    table = paper_vs_reproduced(wer, load_paper_results(paper_path))
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_text_atomic(
        md_path,
        "# The paper's WER beside ours\n\nWER (%) on the clean test set. Published numbers from"
        f" `{paper_path}` (each with its source); ours are the mean over seeds of this run's corpus and"
        " models, so at the embedded scale they are not expected to match. Difference: ours minus the"
        " paper's.\n\n" + table.astype(object).where(table.notna(), "-").to_markdown(index=False) + "\n",
    )
    return table
