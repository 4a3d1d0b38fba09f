"""The import stage: a checkpoint released by the Llama-AVSR authors, read, shown and written as the
checkpoint folder of one experiment of the grid (avsr_sinks.importers.llama_avsr does the mapping)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from avsr_sinks.importers.llama_avsr import import_llama_avsr, requested_experiment
from avsr_sinks.importers.llama_avsr_checkpoint import infer_config, read_checkpoint
from avsr_sinks.settings.grid import Experiment
from avsr_sinks.settings.spec import resolve_run


def import_checkpoint_file(
    path: Path,
    out_dir: Path,
    params: Mapping[str, Any],
    experiment_name: str | None,
    audio_rate: int | None,
    video_rate: int | None,
    llm_dir: Path | None,
    show: Callable[[str], None] = print,
) -> Experiment:
    """Read the checkpoint at ``path``, show what it holds, and import it as the experiment named (or the
    one its task and the rates give) into ``out_dir``; ``llm_dir`` defaults to llm.path.

    ``show`` (print by default) gets the inferred configuration as soon as it is known, so that a refusal
    by the experiment, the params or the LLM folder comes after what the checkpoint holds.
    """
    source = read_checkpoint(path)
    inferred = infer_config(source)
    show(f"{path} ({source.container}):\n{inferred.summary()}")
    experiment = requested_experiment(experiment_name, audio_rate, video_rate, inferred)
    spec = resolve_run(params, experiment)
    import_llama_avsr(source, out_dir, spec, llm_dir or Path(spec.llm.path))
    return experiment
