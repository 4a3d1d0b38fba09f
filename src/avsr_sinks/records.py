"""Records: the part of the configuration that determines a stage's output.

A record is stored in the checkpoint's experiment.json and in every evaluation file, drives Snakemake's
rerun-on-params trigger, and is compared when a checkpoint is loaded, so a checkpoint is never evaluated
under a configuration it was not trained with. Kept free of torch so the Snakefile loads quickly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from avsr_sinks.grid import Experiment


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
        "train": {**params["train"], "lr": params["train"]["lr"][experiment.task]},
        **({"decorr": params["decorr"]} if experiment.method == "decorr" else {}),
    }


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
