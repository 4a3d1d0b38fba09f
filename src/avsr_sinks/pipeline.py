"""Where every stage's files live, and the targets of a whole run: shared by Snakemake and dvc.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avsr_sinks.grid import Experiment, build_grid

SPLITS = ("train", "val", "test")


def corpus_root(params: Mapping[str, Any]) -> str:
    return params["corpus"]["root"]


def corpus_card(params: Mapping[str, Any], ext: str) -> str:
    return f"results/corpus/{params['corpus']['name']}.{ext}"


def corpus_intelligibility(params: Mapping[str, Any]) -> str:
    """Zero-shot Whisper CER/WER on the synthetic test split."""
    return f"results/corpus/{params['corpus']['name']}.whisper.json"


def audio_encoder_id(params: Mapping[str, Any]) -> str:
    """Names the feature cache: encoder and window, since both change the features."""
    enc = params["audio_encoder"]
    return f"{enc['name']}-w{enc['window_seconds']:g}"


def feature_dir(params: Mapping[str, Any], split: str, condition: str) -> str:
    return f"data/features/{params['corpus']['name']}/{audio_encoder_id(params)}/{split}-{condition}"


def checkpoint_dir(experiment: Experiment | str) -> str:
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/checkpoints/{name}"


def resume_dir(experiment: Experiment | str) -> str:
    """Where an unfinished training run keeps its state; not an output (it outlives a killed job)."""
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/resume/{name}"


def eval_json(experiment: Experiment | str, condition: str) -> str:
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/eval/{name}/{condition}.json"


def eval_csv(experiment: Experiment | str, condition: str) -> str:
    return eval_json(experiment, condition).removesuffix(".json") + ".hyp.csv"


WER_TABLES = ("results/tables/wer.csv", "results/tables/wer.md")


def eval_targets(params: Mapping[str, Any]) -> list[str]:
    return [eval_json(e, c) for e in build_grid(params) for c in params["evaluate"]["conditions"]]


def final_targets(params: Mapping[str, Any]) -> list[str]:
    """Everything a full run produces at the top of the DAG (Snakemake's rule all)."""
    targets = [*WER_TABLES]
    if params["corpus"]["kind"] == "synthetic":
        targets += [corpus_card(params, "md"), corpus_card(params, "json"), corpus_intelligibility(params)]
    if params["llm"]["source"] == "pretrain":
        targets.append("results/lm/pretrain.json")
    return targets
