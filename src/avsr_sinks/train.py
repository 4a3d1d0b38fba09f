"""Training loop for the projectors and LoRA adapters (accelerate: bf16 autocast on GPU, and on CPU when
asked; DDP)."""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from avsr_sinks.augment import FeatureAugmenter
from avsr_sinks.data.dataset import FrameBudgetBatchSampler
from avsr_sinks.features import FeatureDataset, collate_features
from avsr_sinks.io import atomic_path, git_commit
from avsr_sinks.losses import decorrelation_loss
from avsr_sinks.model import AVSRModel
from avsr_sinks.nonfinite import NonFiniteStep
from avsr_sinks.records import differences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    epochs: int
    max_frames: int
    grad_clip: float
    checkpoint_every: int
    projector_lr_multiplier: float
    lora_lr_multiplier: float
    ctc_weight: float  # weight of the auxiliary CTC loss (0: none, the paper's recipe)
    # The first steps train projectors + CTC head on the CTC loss alone, without running the LLM (counted
    # within the epochs; 0: none, the paper's recipe).
    ctc_warmup_steps: int
    # The checkpoint is the mean of the trainable weights at the last K saves, the final step one of
    # them (Llama-AVSR and fairseq average their last checkpoints); 1: the final weights as they are.
    average_last: int
    # Weight of the decorrelation loss (0: none, the baseline) and the decoder layers it reads (None: all
    # of 1..L-1).
    decorr_lambda: float = 0.0
    decorr_layers: tuple[int, ...] | None = None
    # bf16 autocast of the forward pass on a CPU too (a GPU always trains under it); weights, optimizer
    # state and the checkpoint stay float32.
    autocast_bf16_on_cpu: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: AVSRModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable tensors; projectors may get their own learning rate."""
    projector, adapter = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (projector if name.startswith(("projectors.", "ctc_head.")) else adapter).append(param)
    groups = [
        {"params": adapter, "lr": cfg.lr * cfg.lora_lr_multiplier},
        {"params": projector, "lr": cfg.lr * cfg.projector_lr_multiplier},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], betas=cfg.betas, weight_decay=cfg.weight_decay
    )


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


def _save_folder(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}"


def _save_resume(
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
    with atomic_path(_save_folder(folder, step)) as tmp:
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


def _load_resume(folder: Path, record: Mapping[str, Any]) -> dict[str, Any] | None:
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


def train(
    model: AVSRModel,
    dataset: FeatureDataset,
    cfg: TrainConfig,
    out_dir: Path,
    record: Mapping[str, Any],
    resume_dir: Path | None = None,
    augment: FeatureAugmenter | None = None,
) -> dict[str, Any]:
    """Train and write the checkpoint folder (model.safetensors, experiment.json, train_log.csv) atomically.

    Every ``cfg.checkpoint_every`` steps the full training state goes to ``resume_dir``; a run started
    again after being killed continues from there and ends with the same weights as an uninterrupted
    run. The resume state is removed once the checkpoint folder is complete. With
    ``cfg.average_last`` > 1 the trainable weights of the last saves stay in ``resume_dir`` until then,
    and model.safetensors holds their mean with the final weights.

    Args:
        model: the AVSR model; only its trainable tensors are updated and saved.
        dataset: training utterances with cached features.
        cfg: optimisation settings.
        out_dir: the checkpoint folder to create.
        record: the experiment's resolved configuration, stored in experiment.json.
        resume_dir: where to keep the resume state (None: no intermediate checkpoints, so no average).
        augment: train-time augmentation of the cached features (None: the features as cached).

    Returns:
        the run's summary (steps, seconds, final loss, the steps whose weights were averaged), also
        stored in experiment.json.
    """
    if cfg.average_last > 1 and resume_dir is None:
        raise ValueError(
            f"train.average_last = {cfg.average_last} averages saved checkpoints, which live in the "
            "resume folder: pass resume_dir (workflow_scripts/train.py --resume-dir)"
        )
    if cfg.ctc_warmup_steps and not cfg.ctc_weight:
        raise ValueError(
            f"train.ctc_warmup_steps = {cfg.ctc_warmup_steps} trains on the CTC loss alone, but "
            "train.ctc_weight is 0 (no CTC head): set a CTC weight or no warm-up"
        )
    if augment is not None:
        augment.check_covers(dataset.uids)
    seed_everything(cfg.seed)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision="bf16" if torch.cuda.is_available() or cfg.autocast_bf16_on_cpu else "no",
        # The CTC warm-up leaves the LoRA adapters out of the graph; DDP must be told to expect that.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.ctc_warmup_steps > 0)],
    )
    sampler = FrameBudgetBatchSampler(
        dataset.frame_lengths(), max_frames=cfg.max_frames, shuffle=True, seed=cfg.seed
    )
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_features)
    # Length-bucketed packing gives each epoch its own number of batches; count them all up front so the
    # schedule ends on the last step and a resumed run finds its epoch and batch.
    epoch_steps = []
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        epoch_steps.append(len(sampler))
    sampler.set_epoch(0)
    total_steps = sum(epoch_steps)
    averaged = averaged_steps(total_steps, cfg.checkpoint_every, cfg.average_last)
    optimizer = make_optimizer(model, cfg)
    schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total_steps)
    step, log_rows = 0, []
    state = _load_resume(resume_dir, record) if resume_dir is not None else None
    if state is not None:
        model.load_trainable_state_dict(state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        step, log_rows = state["step"], state["log"]
        log.info("resuming %s from step %d of %d (%s)", out_dir.name, step, total_steps, resume_dir)
    elif resume_dir is not None and resume_dir.exists():
        # Saves of a run under another configuration must not be averaged into this one.
        shutil.rmtree(resume_dir)
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    unwrapped = accelerator.unwrap_model(model)
    log.info("training %d trainable parameters for %d steps", unwrapped.count_trainable(), total_steps)
    start, loss = time.perf_counter(), math.nan
    progress = tqdm(total=total_steps, initial=step, desc=f"train {out_dir.name}", mininterval=5)
    snapshots_kept = max(cfg.average_last - 2, 0)  # saves before the newest whose weights the average needs
    first_epoch, skip = epoch_position(step, epoch_steps)
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        # accelerate's loaders re-seed their sampler from their own iteration counter on every pass;
        # set it to the real epoch, so a resumed run sees the same batch order as an uninterrupted one.
        # The loader that skips a resumed epoch's first batches does not pass the epoch on to the
        # sampler (a run resumed inside epoch 2 drew epoch 0's order), so the sampler gets it directly.
        batches.set_epoch(epoch)
        sampler.set_epoch(epoch)
        skip = 0
        for batch in batches:
            tick = time.perf_counter()
            warming_up = step < cfg.ctc_warmup_steps
            features = (
                batch["features"] if augment is None else augment(batch["uids"], batch["features"], epoch)
            )
            decorrelating = cfg.decorr_lambda > 0 and not warming_up
            out, assembled = model(
                features, batch["transcripts"], output_hidden_states=decorrelating, run_llm=not warming_up
            )
            ctc = out["ctc_loss"] if cfg.ctc_weight else torch.zeros(())
            decorr = (
                decorrelation_loss(out.hidden_states, assembled.segments, cfg.decorr_layers)
                if decorrelating
                else torch.zeros(())
            )
            total = ctc if warming_up else out.loss + cfg.ctc_weight * ctc + cfg.decorr_lambda * decorr
            stop = NonFiniteStep(step + 1, total_steps, batch["uids"], resume_dir)
            stop.check("loss", total, {"cross-entropy": None if warming_up else out.loss, "CTC": ctc})
            accelerator.backward(total)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            stop.check("gradient norm", grad_norm, {"decorrelation": decorr})
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step, loss = step + 1, math.nan if warming_up else out.loss.item()
            tokens = math.nan if warming_up else int(assembled.attention_mask.sum())
            log_rows.append(
                [
                    step,
                    epoch,
                    f"{loss:.5f}",
                    f"{ctc.item():.5f}",
                    f"{decorr.item():.6f}",
                    f"{schedule.get_last_lr()[0]:.3e}",
                    f"{float(grad_norm):.4f}",
                    f"{tokens / (time.perf_counter() - tick):.0f}",
                ]
            )
            progress.update()
            progress.set_postfix(loss=f"{loss:.3f}")
            if resume_dir is not None and step % cfg.checkpoint_every == 0 and step < total_steps:
                _save_resume(
                    resume_dir, unwrapped, optimizer, schedule, step, record, log_rows, snapshots_kept
                )
    progress.close()
    # accelerate put its autocast around the model's own forward; whatever runs the model next (a test,
    # a decode in the same process) gets the plain float32 forward back.
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    weights = unwrapped.trainable_state_dict()
    if len(averaged) > 1:
        assert resume_dir is not None
        snapshots = [
            load_file(str(_save_folder(resume_dir, s) / "trainable.safetensors")) for s in averaged[:-1]
        ]
        weights = average_state_dicts([*snapshots, weights])
    summary = {
        "steps": step,
        "seconds": time.perf_counter() - start,
        "final_loss": loss,
        "averaged_steps": averaged,
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        with (tmp / "train_log.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["step", "epoch", "loss", "ctc_loss", "decorr_loss", "lr", "grad_norm", "tokens_per_s"]
            )
            writer.writerows(log_rows)
        save_file(weights, str(tmp / "model.safetensors"))
        experiment = {
            **record,
            "summary": summary,
            "git_commit": git_commit(),
            "trainable_parameters": unwrapped.count_trainable(),
        }
        (tmp / "experiment.json").write_text(json.dumps(experiment, indent=2, sort_keys=True, default=str))
    if resume_dir is not None:
        shutil.rmtree(resume_dir, ignore_errors=True)
    return summary
