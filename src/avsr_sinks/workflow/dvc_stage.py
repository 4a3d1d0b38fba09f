"""The pieces every generated DVC stage is made of (avsr_sinks.workflow.dvc_yaml assembles dvc.yaml from
them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PY = "python workflow_scripts"
LIB = "src/avsr_sinks"
# Library modules every model stage imports, so a code change reruns what it affects.
MODEL_CODE = [
    f"{LIB}/modeling/avsr_model.py",
    f"{LIB}/modeling/layers.py",
    f"{LIB}/modeling/llm.py",
    f"{LIB}/features/store.py",
    f"{LIB}/modeling/checkpoints.py",
    f"{LIB}/workflow/experiment_inputs.py",
    f"{LIB}/settings/spec.py",
    f"{LIB}/settings/config.py",
]


def stage(
    cmd: str, deps: list[str], outs: list[Any], params: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    stage: dict[str, Any] = {"cmd": cmd, "deps": deps}
    if params:
        stage["params"] = params
    if outs:
        stage["outs"] = outs
    stage.update(extra)
    return stage


def feature_flags(caches: Mapping[str, str], flag: str = "--features") -> str:
    return " ".join(f"{flag} {m}={path}" for m, path in caches.items())
