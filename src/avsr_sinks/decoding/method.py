"""Decoding as the experiment's method: ACT calibrates the heads its search kept, the trained methods
decode as they are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avsr_sinks.decoding.act import calibrate_as_set
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.settings.spec import RunSpec, differences


def read_act_heads(path: Path, spec: RunSpec) -> list[list[int]]:
    """The heads an ACT head search kept, refusing a search made for another checkpoint or settings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no ACT head search for {spec.experiment.name}; run the act_heads rule"
        )
    stored = json.loads(path.read_text(encoding="utf-8"))
    wanted = spec.eval_record()
    mismatches = differences({k: stored.get(k) for k in wanted}, wanted)
    if mismatches:
        raise ValueError(
            f"{path}: the head search was made under other settings:\n  " + "\n  ".join(mismatches)
        )
    if "kept_heads" not in stored:
        raise ValueError(f"{path}: no kept_heads list; rerun the act_heads rule")
    return stored["kept_heads"]


@contextmanager
def method_context(
    model: AVSRModel, spec: RunSpec, act_heads: Path | None
) -> Iterator[list[list[int]] | None]:
    """Run the block as the experiment's method decodes: ACT calibrates the heads its search kept (and
    yields them); the trained methods decode as they are (and yield None)."""
    experiment = spec.experiment
    if spec.act is None:
        if act_heads is not None:
            raise ValueError(
                f"{experiment.name} is not an ACT experiment, but ACT heads ({act_heads}) were given"
            )
        yield None
        return
    if act_heads is None:
        raise ValueError(f"{experiment.name} decodes with ACT: give the heads.json of its head search")
    heads = read_act_heads(act_heads, spec)
    with calibrate_as_set(model, [tuple(h) for h in heads], spec.act):
        yield heads
