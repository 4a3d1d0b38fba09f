"""Result tables from the evaluation files (CSV for machines, Markdown for people)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from avsr_sinks.grid import Experiment, parse_name
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


def _experiment_columns(experiment: Experiment) -> dict[str, Any]:
    return {
        "experiment": experiment.name,
        "task": experiment.task.upper(),
        "rates": experiment.rates,
        "method": experiment.method,
        "seed": experiment.seed,
    }


def collect_wer(eval_files: Sequence[Path]) -> pd.DataFrame:
    """One row per evaluation file ``results/eval/<experiment>/<condition>.json``."""
    rows = []
    for path in eval_files:
        path = Path(path)
        result = json.loads(path.read_text(encoding="utf-8"))
        experiment = parse_name(path.parent.name)
        rows.append(
            {
                **_experiment_columns(experiment),
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


SINK_COLUMNS = [
    "experiment",
    "task",
    "rates",
    "method",
    "seed",
    "bos_sink_share_percent",
    "intermediate_sinks",
    "intermediate_sinks_on",
    "massive_activations",
    "max_top1_over_median",
    "first_mlp_layer",
    "cosine_bos_sink",
    "cosine_bos_nonsink",
    "utterances",
]

# The paper sees intermediate sinks align with BOS "from layer 2 or 3 on"; the cosine columns average over
# the layers from this one to the last.
COSINE_FROM_LAYER = 2


def _mean_from_layer(layers: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [x[key] for x in layers[COSINE_FROM_LAYER:] if x[key] is not None]
    return round(sum(values) / len(values), 3) if values else None


def collect_sinks(metrics_files: Sequence[Path]) -> pd.DataFrame:
    """One row per analysis ``results/analysis/<experiment>/metrics.json``.

    BOS sink share: the mean over layers after the first (layer 0 mixes tokens before any sink forms, and
    the paper's counts start after it) of the share of heads in which BOS is a sink. Intermediate sinks:
    sink tokens other than BOS per utterance, summed over layers, and the segments they sit on. Massive
    activations: entries past both thresholds, summed over layers and utterances. Cosines with BOS: of the
    intermediate sink tokens and of the other tokens, the mean over layers ``COSINE_FROM_LAYER`` and up
    (empty where no layer has such tokens).
    """
    rows = []
    for path in metrics_files:
        path = Path(path)
        metrics = json.loads(path.read_text(encoding="utf-8"))
        experiment = parse_name(path.parent.name)
        layers = metrics["layers"]
        on: dict[str, int] = {}
        for layer in layers:
            for segment, count in layer["intermediate_sinks_by_segment"].items():
                on[segment] = on.get(segment, 0) + count
        rows.append(
            {
                **_experiment_columns(experiment),
                "bos_sink_share_percent": round(
                    100 * sum(x["bos_sink_share"] for x in layers[1:]) / max(len(layers) - 1, 1), 1
                ),
                "intermediate_sinks": round(sum(x["intermediate_sink_count"] for x in layers), 2),
                "intermediate_sinks_on": ", ".join(f"{k} {v}" for k, v in sorted(on.items())) or "-",
                "massive_activations": sum(x["massive"]["count"] for x in layers),
                "max_top1_over_median": round(max(x["massive"]["top1_over_median"] for x in layers), 1),
                "first_mlp_layer": metrics["first_mlp_layer"],
                "cosine_bos_sink": _mean_from_layer(layers, "cosine_bos_sink"),
                "cosine_bos_nonsink": _mean_from_layer(layers, "cosine_bos_nonsink"),
                "utterances": metrics["utterances"],
            }
        )
    return pd.DataFrame(rows, columns=SINK_COLUMNS).sort_values(["task", "rates", "method", "seed"])


def write_sink_tables(metrics_files: Sequence[Path], csv_path: Path, md_path: Path) -> pd.DataFrame:
    table = collect_sinks(metrics_files)
    thresholds = json.loads(Path(metrics_files[0]).read_text(encoding="utf-8"))["thresholds"]
    note = (
        f"Sink: sink score above {thresholds['sink']}; massive activation:"
        f" |h| > {thresholds['massive_abs']:g}"
        f" and at least {thresholds['massive_ratio']:g} x the layer's median |h|. BOS sink share: mean over"
        " layers after the first; intermediate sinks: per utterance, summed over layers; cosine with BOS of"
        f" the intermediate sinks and of the other tokens: mean over layers {COSINE_FROM_LAYER} and up.\n\n"
    )
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_text_atomic(
        md_path,
        "# Attention sinks and massive activations\n\n" + note + table.to_markdown(index=False) + "\n",
    )
    return table
