"""A training run's state between steps: where it stands in its epochs, the resume saves that let a killed
run continue bit for bit, the state a baseline keeps for its decorr run, and the average of the last saves'
weights."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from avsr_sinks.data.dataset import FrameBudgetBatchSampler
from avsr_sinks.io import atomic_path
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.settings.spec import differences

log = logging.getLogger(__name__)

# Where a baseline keeps its state for its decorr run: in its resume folder, then in its checkpoint.
BRANCH = "branch"


def epoch_lengths(sampler: FrameBudgetBatchSampler, epochs: int) -> list[int]:
    """Length-bucketed packing gives each epoch its own number of batches; count them all up front so
    the schedule ends on the last step and a resumed run finds its epoch and batch."""
    counts = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts.append(len(sampler))
    sampler.set_epoch(0)
    return counts


def epoch_position(step: int, epoch_steps: Sequence[int]) -> tuple[int, int]:
    """(epoch, batches already done in it) of a run that has completed ``step`` steps."""
    for epoch, length in enumerate(epoch_steps):
        if step < length:
            return epoch, step
        step -= length
    return len(epoch_steps), 0


def averaged_steps(total_steps: int, checkpoint_every: int, average_last: int) -> list[int]:
    """The steps whose trainable weights the checkpoint averages: the last ``average_last - 1`` resume
    saves (every ``checkpoint_every`` steps, before the end) and the final step."""
    saves = list(range(checkpoint_every, total_steps, checkpoint_every))
    if average_last - 1 > len(saves):
        raise ValueError(
            f"train.average_last = {average_last} asks for {average_last} snapshots, but this run of "
            f"{total_steps} steps saves {len(saves)} (every train.checkpoint_every = {checkpoint_every} "
            "steps) plus the final step: lower train.average_last or train.checkpoint_every"
        )
    return [*saves[len(saves) - (average_last - 1) :], total_steps]


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts that hold the same tensor names and shapes, accumulated in
    float64 and returned in each tensor's own dtype."""
    if not states:
        raise ValueError("no state dicts to average")
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if state.keys() != first.keys():
            raise ValueError(
                f"state dict {i} holds other tensors than state dict 0: "
                f"differing names {sorted(state.keys() ^ first.keys())[:5]}"
            )
        for name, tensor in state.items():
            if tensor.shape != first[name].shape:
                raise ValueError(
                    f"tensor {name}: shape {tuple(tensor.shape)} in state dict {i}, "
                    f"{tuple(first[name].shape)} in state dict 0"
                )
    return {
        name: (sum(state[name].double() for state in states) / len(states)).to(tensor.dtype)
        for name, tensor in first.items()
    }


def branch_step(total_steps: int, branch_at: float) -> int:
    """The step after which a decorr run continues its baseline's run (decorr.branch_at of the schedule)."""
    return min(max(round(branch_at * total_steps), 1), total_steps - 1)


# A branching decorr run compares its baseline's record with its own, less what tells the two apart.
_BRANCH_DIFFERENCES = ("experiment", "method", "decorr")


def load_branch(folder: Path, record: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The state a baseline kept at ``step`` for its decorr run (``folder``: the baseline checkpoint's
    branch/ folder), checked to be of the same settings as the decorr run's ``record``."""
    saves = sorted(p for p in folder.glob("step-*") if (p / "progress.json").is_file())
    if not saves:
        raise FileNotFoundError(
            f"{folder}: no branch state; the baseline checkpoint was trained without decorr.branch_at "
            "(retrain it, or set decorr.branch_at to null)"
        )
    progress = json.loads((saves[-1] / "progress.json").read_text(encoding="utf-8"))
    if progress["step"] != step:
        raise ValueError(
            f"{saves[-1]}: the baseline kept its state at step {progress['step']}, this run branches at "
            f"step {step}: retrain the baseline under the same decorr.branch_at"
        )

    def shared(rec: Mapping[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in rec.items() if k not in _BRANCH_DIFFERENCES}
        if "train" in kept:
            kept["train"] = {k: v for k, v in kept["train"].items() if k != "branch_from"}
        return kept

    mismatches = differences(shared(progress["record"]), shared(json.loads(json.dumps(record, default=str))))
    if mismatches:
        raise ValueError(
            f"{folder}: the baseline was trained under other settings than this decorr run shares with it: "
            + "; ".join(mismatches)
        )
    # weights_only: the file holds tensors and plain containers only; nothing else may be unpickled.
    states = torch.load(saves[-1] / "optimizer.pt", weights_only=True)
    return {**progress, **states, "trainable": load_file(str(saves[-1] / "trainable.safetensors"))}


def save_folder(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}"


def save_resume(
    folder: Path,
    model: AVSRModel,
    optimizer,
    schedule,
    step: int,
    record: Mapping[str, Any],
    log_rows: list[list[str]],
    snapshots_kept: int,
) -> None:
    """Everything a killed run needs to continue bit for bit, in ``folder/step-NNNNNNNN``.

    Each save is a new folder renamed into place whole, and older ones are changed only after it, so
    a kill at any moment leaves at least one complete state. The ``snapshots_kept`` saves before the
    new one keep their trainable weights (for the average of the last checkpoints) and lose the rest;
    older saves are removed.
    """
    with atomic_path(save_folder(folder, step)) as tmp:
        tmp.mkdir()
        save_file(model.trainable_state_dict(), str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            tmp / "optimizer.pt",
        )
        (tmp / "progress.json").write_text(
            json.dumps({"step": step, "record": record, "log": log_rows}, default=str)
        )
    *older, _ = sorted(folder.glob("step-*"))
    for i, save in enumerate(reversed(older)):
        if i < snapshots_kept:
            # progress.json first: a save that lost only part of its files is never taken for a state.
            for name in ("progress.json", "optimizer.pt"):
                (save / name).unlink(missing_ok=True)
        else:
            shutil.rmtree(save)


def load_resume(folder: Path, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The latest saved state of an interrupted run of the same experiment, or None to start afresh."""
    saves = sorted(p for p in folder.glob("step-*") if (p / "progress.json").is_file())
    if not saves:
        return None
    latest = saves[-1]
    progress = json.loads((latest / "progress.json").read_text(encoding="utf-8"))
    mismatches = differences(progress["record"], json.loads(json.dumps(record, default=str)))
    if mismatches:
        log.warning(
            "ignoring resume state in %s: it was saved under another configuration (%s); "
            "starting from step 0",
            latest,
            "; ".join(mismatches),
        )
        return None
    # weights_only: the file holds tensors and plain containers only; nothing else may be unpickled.
    states = torch.load(latest / "optimizer.pt", weights_only=True)
    return {**progress, **states, "trainable": load_file(str(latest / "trainable.safetensors"))}


def resume(
    model: AVSRModel,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    resume_dir: Path | None,
    record: Mapping[str, Any],
    name: str,
    total_steps: int,
) -> tuple[int, list[list[Any]]]:
    """The step and log rows to continue from: a matching resume save's, loaded into the model, optimizer,
    schedule and RNG; else a fresh start (0, [])."""
    state = load_resume(resume_dir, record) if resume_dir is not None else None
    if state is None:
        if resume_dir is not None and resume_dir.exists():
            # Saves of a run under another configuration must not be averaged into this one.
            shutil.rmtree(resume_dir)
        return 0, []
    log.info("resuming %s from step %d of %d (%s)", name, state["step"], total_steps, resume_dir)
    return _restore(model, optimizer, schedule, state)


def continue_branch(
    model: AVSRModel,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    branch_from: Path,
    record: Mapping[str, Any],
    name: str,
    step: int,
) -> tuple[int, list[list[Any]]]:
    """A decorr run's start: its baseline's state at the branch step (weights, optimizer, schedule, RNG and
    the log of the steps they share), from the baseline's checkpoint ``branch_from``."""
    state = load_branch(branch_from / BRANCH, record, step)
    log.info("%s continues %s from step %d", name, branch_from, step)
    return _restore(model, optimizer, schedule, state)


def _restore(
    model: AVSRModel, optimizer: torch.optim.Optimizer, schedule: Any, state: Mapping[str, Any]
) -> tuple[int, list[list[Any]]]:
    """A saved training state loaded into the run; returns its step and log rows."""
    model.load_trainable_state_dict(state["trainable"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["log"]


def final_weights(
    weights: dict[str, torch.Tensor], averaged: list[int], resume_dir: Path | None
) -> dict[str, torch.Tensor]:
    """The final trainable weights, or their mean with the saves of the steps ``averaged`` names."""
    if len(averaged) <= 1:
        return weights
    assert resume_dir is not None
    snapshots = [load_file(str(save_folder(resume_dir, s) / "trainable.safetensors")) for s in averaged[:-1]]
    return average_state_dicts([*snapshots, weights])
