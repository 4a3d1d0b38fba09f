"""Result tables from the evaluation files (CSV for machines, Markdown for people)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from avsr_sinks.grid import parse_name
from avsr_sinks.io import write_text_atomic

WER_COLUMNS = [
    "experiment",
    "task",
    "rates",
    "method",
    "seed",
    "condition",
    "wer_percent",
    "substitutions",
    "deletions",
    "insertions",
    "reference_words",
    "utterances",
]


def collect_wer(eval_files: Sequence[Path]) -> pd.DataFrame:
    """One row per evaluation file ``results/eval/<experiment>/<condition>.json``."""
    rows = []
    for path in eval_files:
        path = Path(path)
        result = json.loads(path.read_text(encoding="utf-8"))
        experiment = parse_name(path.parent.name)
        rows.append(
            {
                "experiment": experiment.name,
                "task": experiment.task.upper(),
                "rates": experiment.rates,
                "method": experiment.method,
                "seed": experiment.seed,
                "condition": path.stem,
                "wer_percent": round(100 * result["wer"], 2),
                **{k: result[k] for k in WER_COLUMNS[7:]},
            }
        )
    return pd.DataFrame(rows, columns=WER_COLUMNS).sort_values(
        ["task", "rates", "method", "seed", "condition"]
    )


def write_wer_tables(eval_files: Sequence[Path], csv_path: Path, md_path: Path) -> pd.DataFrame:
    table = collect_wer(eval_files)
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_text_atomic(md_path, "# Word error rate (%)\n\n" + table.to_markdown(index=False) + "\n")
    return table
