"""Result tables from the evaluation files (CSV for machines, Markdown for people)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from avsr_sinks.io import write_text_atomic
from avsr_sinks.settings.grid import Experiment, parse_name

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
    "massive_token_sink_share_percent",
    "intermediate_sinks",
    "sinks_modality",
    "sinks_prompt",
    "sinks_response",
    "massive_activations",
    "massive_non_bos",
    "max_top1_over_median",
    "first_mlp_layer",
    "cosine_bos_sink",
    "cosine_bos_nonsink",
    "cosine_bos_modality_sink",
    "cosine_bos_modality_nonsink",
    "utterances",
]

# The paper sees intermediate sinks align with BOS "from layer 2 or 3 on"; the cosine columns average over
# the layers from this one to the last.
COSINE_FROM_LAYER = 2


def _mean_from_layer(layers: Sequence[dict[str, Any]], key: str, group: str | None = None) -> float | None:
    found = [x["by_group"][group][key] if group else x[key] for x in layers[COSINE_FROM_LAYER:]]
    values = [v for v in found if v is not None]
    return round(sum(values) / len(values), 3) if values else None


def bos_share_layers(num_layers: int) -> range:
    """The layers the BOS sink share is averaged over: 2 to L-2. Sinks form after the first layers, and
    the last layer attends for the next token, not as a sink; a model of under 4 layers has no such
    middle, so all its layers after the first count."""
    return range(2, num_layers - 1) if num_layers >= 4 else range(1, max(num_layers, 2))


def collect_sinks(metrics_files: Sequence[Path]) -> pd.DataFrame:
    """One row per analysis ``results/analysis/<experiment>/metrics.json``.

    BOS sink share: the mean over layers ``bos_share_layers`` of the share of heads in which BOS is a
    sink; massive-token sink share: the same for BOS and the other tokens that carry a massive activation,
    together (their summed sink score). Intermediate sinks: sink tokens other than BOS per utterance,
    summed over layers, in all and by segment group (modality blocks, prompt, response). Massive
    activations: entries past both thresholds, summed over layers and utterances, in all and at tokens
    other than BOS. Cosines with BOS: of the intermediate sink tokens and of the other tokens, in all and
    in the modality blocks, the mean over layers ``COSINE_FROM_LAYER`` and up (empty where no layer has
    such tokens).
    """
    rows = []
    for path in metrics_files:
        path = Path(path)
        metrics = json.loads(path.read_text(encoding="utf-8"))
        experiment = parse_name(path.parent.name)
        layers = metrics["layers"]
        share_layers = bos_share_layers(len(layers))
        rows.append(
            {
                **_experiment_columns(experiment),
                **{
                    f"{key}_percent": round(
                        100 * sum(layers[i][key] for i in share_layers) / len(share_layers), 1
                    )
                    for key in ("bos_sink_share", "massive_token_sink_share")
                },
                "intermediate_sinks": round(sum(x["intermediate_sink_count"] for x in layers), 2),
                **{
                    f"sinks_{group}": round(
                        sum(x["by_group"][group]["sinks_per_utterance"] for x in layers), 2
                    )
                    for group in ("modality", "prompt", "response")
                },
                "massive_activations": sum(x["massive"]["count"] for x in layers),
                "massive_non_bos": sum(x["massive"]["count_non_bos"] for x in layers),
                "max_top1_over_median": round(max(x["massive"]["top1_over_median"] for x in layers), 1),
                "first_mlp_layer": metrics["first_mlp_layer"],
                "cosine_bos_sink": _mean_from_layer(layers, "cosine_bos_sink"),
                "cosine_bos_nonsink": _mean_from_layer(layers, "cosine_bos_nonsink"),
                "cosine_bos_modality_sink": _mean_from_layer(layers, "cosine_bos_sink", "modality"),
                "cosine_bos_modality_nonsink": _mean_from_layer(layers, "cosine_bos_nonsink", "modality"),
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
        f" and at least {thresholds['massive_ratio']:g} x the layer's median |h|; a position counts as a sink"
        f" only if at least {thresholds.get('min_queries', 1)} queries see it. BOS sink share: mean over"
        " layers 2 to L-2; massive-token sink share: the same for BOS and the other tokens that carry a"
        " massive activation, their sink scores summed; intermediate sinks: per utterance, summed over"
        " layers, in all and in the modality blocks (delimiters and feature tokens), prompt and response;"
        " cosine with BOS of the intermediate"
        f" sinks and of the other tokens (in all, and in the modality blocks): mean over layers"
        f" {COSINE_FROM_LAYER} and up.\n\n"
    )
    write_text_atomic(csv_path, table.to_csv(index=False))
    write_text_atomic(
        md_path,
        "# Attention sinks and massive activations\n\n" + note + table.to_markdown(index=False) + "\n",
    )
    return table
