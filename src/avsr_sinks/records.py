"""Records: the part of the configuration that determines a stage's output.

A record is stored in the checkpoint's experiment.json and in every evaluation file, drives Snakemake's
rerun-on-params trigger, and is compared when a checkpoint is loaded, so a checkpoint is never evaluated
under a configuration it was not trained with. Kept free of torch so the Snakefile loads quickly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from avsr_sinks.grid import Experiment, build_grid


def train_record(params: Mapping[str, Any], experiment: Experiment) -> dict[str, Any]:
    """Everything the trained weights depend on (for ACT: those of the baseline checkpoint it decodes)."""
    experiment = experiment.trained
    return {
        "experiment": experiment.name,
        "task": experiment.task,
        "audio_rate": experiment.audio_rate,
        "video_rate": experiment.video_rate,
        "method": experiment.method,
        "seed": experiment.seed,
        "corpus": {k: params["corpus"][k] for k in ("name", "kind", "root", "synth")},
        **encoder_records(params, experiment),
        "llm": params["llm"],
        "model": {**params["model"], "prompts": params["model"]["prompts"][experiment.task]},
        "train": {
            **params["train"],
            "lr": params["train"]["lr"][experiment.task],
            "epochs": task_epochs(params, experiment.task),
            "augment": task_augment(params, experiment.task),
            "warm_start": [e.name for e in warm_start_sources(params, experiment)],
        },
        **({"decorr": params["decorr"]} if experiment.method == "decorr" else {}),
    }


def for_task(value: Any, task: str) -> Any:
    """A setting given once for every task, or per task ({asr: ..., vsr: ..., avsr: ...})."""
    return value[task] if isinstance(value, Mapping) else value


def task_augment(params: Mapping[str, Any], task: str) -> dict[str, Any]:
    """train.augment as it applies to one task: the noisy view's share (none without audio) and the time
    mask resolved from their per-task forms."""
    augment = params["train"]["augment"]
    probability = 0.0 if task == "vsr" else for_task(augment["noise"]["probability"], task)
    return {
        **augment,
        "noise": {**augment["noise"], "probability": probability},
        "time_mask_max_seconds": for_task(augment["time_mask_max_seconds"], task),
    }


def task_epochs(params: Mapping[str, Any], task: str) -> int:
    return for_task(params["train"]["epochs"], task)


def warm_start_sources(params: Mapping[str, Any], experiment: Experiment) -> list[Experiment]:
    """The trained experiments whose checkpoints initialise ``experiment`` (train.warm_start): same
    method, seed and the rates of their own modalities; each must be in the grid."""
    experiment = experiment.trained
    sources = []
    for task in params["train"]["warm_start"][experiment.task]:
        source = Experiment(
            task,
            experiment.audio_rate if task in ("asr", "avsr") else None,
            experiment.video_rate if task in ("vsr", "avsr") else None,
            experiment.method,
            experiment.seed,
        )
        if source not in build_grid(params):
            raise ValueError(
                f"train.warm_start.{experiment.task} starts {experiment.name} from {source.name}, which is "
                f"not in the grid (its rates, method and seed): add it there or remove {task} from the "
                "warm start"
            )
        sources.append(source)
    return sources


def encoder_records(params: Mapping[str, Any], experiment: Experiment) -> dict[str, Any]:
    """The settings of the encoders whose features the experiment reads (batch sizes do not count)."""
    records = {}
    if "audio" in experiment.modalities:
        enc = params["audio_encoder"]
        records["audio_encoder"] = {k: enc[k] for k in ("source", "path", "name", "window_seconds")}
    if "video" in experiment.modalities:
        records["video_encoder"] = {k: v for k, v in params["video_encoder"].items() if k != "batch_size"}
    return records


def eval_record(params: Mapping[str, Any], experiment: Experiment) -> dict[str, Any]:
    """What a decoding depends on: the checkpoint's record, the decoding settings and, for ACT, the
    calibration (the evaluated experiment's name, e.g. ``asr-a4-act-s0``, stands beside the checkpoint's)."""
    return {
        **train_record(params, experiment),
        "decode": params["decode"],
        **(
            {"evaluated_experiment": experiment.name, "act": params["act"]}
            if experiment.method == "act"
            else {}
        ),
    }


def differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, Mapping) and isinstance(wanted, Mapping):
        keys = sorted(set(stored) | set(wanted))
        return [d for k in keys for d in differences(stored.get(k), wanted.get(k), f"{prefix}{k}.")]
    if json.dumps(stored, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        return [f"{prefix.rstrip('.')}: checkpoint has {stored!r}, requested {wanted!r}"]
    return []
