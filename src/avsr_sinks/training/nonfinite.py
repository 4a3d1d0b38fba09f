"""Stopping a training run at a step whose loss or gradient is NaN or infinite, before it is applied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # workflow.cli imports the error class in jobs that never load torch
    import torch


class NonFiniteLossError(RuntimeError):
    """A training step's loss or gradient is NaN or infinite; nothing of that step was applied."""


@dataclass(frozen=True)
class NonFiniteStep:
    """Stops a training step whose loss or gradient is not finite, before the optimizer applies it.

    One NaN step turns every weight into NaN, and every later save with it: the run stops instead, with
    the weights and the resume saves as they were after the last good step.
    """

    step: int
    total_steps: int
    uids: Sequence[str]
    resume_dir: Path | None

    def check(self, what: str, value: torch.Tensor, terms: Mapping[str, torch.Tensor | None]) -> None:
        if bool(value.isfinite().all()):
            return
        parts = ", ".join(f"{k} {float(v):.4g}" for k, v in terms.items() if v is not None)
        saves = sorted(self.resume_dir.glob("step-*")) if self.resume_dir and self.resume_dir.is_dir() else []
        resume = (
            f"the last good save, {saves[-1]}, is kept and a rerun resumes from it"
            if saves
            else "no resume save was written before it"
        )
        raise NonFiniteLossError(
            f"training step {self.step} of {self.total_steps}: the {what} is {float(value)} ({parts}); the "
            f"step was not applied and {resume}. Lower train.lr or train.grad_clip, or check this batch's "
            f"inputs: {', '.join(list(self.uids)[:4])}{' ...' if len(self.uids) > 4 else ''}"
        )
