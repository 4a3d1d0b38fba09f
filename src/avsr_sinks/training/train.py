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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from safetensors.torch import save_file
from tqdm import tqdm

from avsr_sinks.data.dataset import FrameBudgetBatchSampler
from avsr_sinks.features.augment import FeatureAugmenter
from avsr_sinks.features.store import FeatureDataset, collate_features
from avsr_sinks.io import atomic_path, git_commit
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.training import training_state
from avsr_sinks.training.losses import decorrelation_loss
from avsr_sinks.training.nonfinite import NonFiniteStep
from avsr_sinks.training.optimization import make_optimizer, make_schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    epochs: int
    # The last share of the steps, over which the rate falls to 0 on a half cosine after holding at its
    # peak; 1: one cosine over the whole run.
    lr_decay_share: float
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
    # bf16 autocast of the forward pass, on a CPU and on a GPU; weights, optimizer state and the
    # checkpoint stay float32. A GPU's float32 matrix products use TF32.
    autocast_bf16_on_cpu: bool = False
    autocast_bf16_on_gpu: bool = False
    # decorr.branch_at: the share of the schedule after which a baseline keeps its state for its decorr
    # run, and from which that run continues (None: the two train apart).
    branch_at: float | None = None


def mixed_precision(cfg: TrainConfig, on_gpu: bool) -> str:
    """accelerate's mixed precision for the device the run trains on: bf16 autocast or none."""
    return "bf16" if (cfg.autocast_bf16_on_gpu if on_gpu else cfg.autocast_bf16_on_cpu) else "no"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class StepTerms:
    """What one optimisation step computed, for the per-step log."""

    loss: float  # the cross-entropy (NaN during the CTC warm-up)
    ctc: torch.Tensor
    decorr: torch.Tensor
    grad_norm: torch.Tensor
    tokens: float  # LLM input tokens of the batch (NaN during the CTC warm-up)

    def log_row(self, step: int, epoch: int, lr: float, seconds: float) -> list[Any]:
        return [
            step,
            epoch,
            f"{self.loss:.5f}",
            f"{self.ctc.item():.5f}",
            f"{self.decorr.item():.6f}",
            f"{lr:.3e}",
            f"{float(self.grad_norm):.4f}",
            f"{self.tokens / seconds:.0f}",
        ]


LOG_HEADER = ["step", "epoch", "loss", "ctc_loss", "decorr_loss", "lr", "grad_norm", "tokens_per_s"]


def train(
    model: AVSRModel,
    dataset: FeatureDataset,
    cfg: TrainConfig,
    out_dir: Path,
    record: Mapping[str, Any],
    resume_dir: Path | None = None,
    augment: FeatureAugmenter | None = None,
    branch_from: Path | None = None,
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
        branch_from: a branching decorr run (``cfg.branch_at``): its baseline's checkpoint folder, whose
            branch/ holds the state this run continues from. Without it, a run under ``cfg.branch_at`` is
            the baseline and keeps its state at that step in its checkpoint's branch/ folder.

    Returns:
        the run's summary (steps, seconds, final loss, the steps whose weights were averaged), also
        stored in experiment.json.
    """
    _refuse_contradictions(cfg, resume_dir, branch_from)
    if augment is not None:
        augment.check_covers(dataset.uids)
    seed_everything(cfg.seed)
    run = _TrainingRun(model, dataset, cfg, record, out_dir.name, resume_dir, augment, branch_from)
    start = time.perf_counter()
    run.train_epochs(out_dir.name)
    return run.finish(out_dir, start)


class _TrainingRun:
    """One call of ``train``: set up (and resumed) on construction, then trained epoch by epoch and
    finished into the checkpoint folder."""

    def __init__(
        self,
        model: AVSRModel,
        dataset: FeatureDataset,
        cfg: TrainConfig,
        record: Mapping[str, Any],
        name: str,
        resume_dir: Path | None,
        augment: FeatureAugmenter | None,
        branch_from: Path | None,
    ) -> None:
        """The accelerator, batches, optimizer and schedule of the run, continued from a matching resume
        save if there is one (else, for a branching decorr run, from its baseline's branch state), and
        prepared by accelerate."""
        self.cfg, self.record, self.resume_dir, self.augment = cfg, record, resume_dir, augment
        on_gpu = torch.cuda.is_available()
        if on_gpu:
            torch.backends.cuda.matmul.allow_tf32 = True
        self.accelerator = Accelerator(
            cpu=not on_gpu,
            mixed_precision=mixed_precision(cfg, on_gpu),
            # The CTC warm-up leaves the LoRA adapters out of the graph; DDP must be told to expect that.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.ctc_warmup_steps > 0)],
        )
        self.sampler = FrameBudgetBatchSampler(
            dataset.frame_lengths(), max_frames=cfg.max_frames, shuffle=True, seed=cfg.seed
        )
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=self.sampler, collate_fn=collate_features)
        self.epoch_steps = training_state.epoch_lengths(self.sampler, cfg.epochs)
        self.total_steps = sum(self.epoch_steps)
        self.averaged = training_state.averaged_steps(
            self.total_steps, cfg.checkpoint_every, cfg.average_last
        )
        self.branch_step = (
            None if cfg.branch_at is None else training_state.branch_step(self.total_steps, cfg.branch_at)
        )
        # The baseline keeps its state at the branch step; a decorr run continues from it.
        self.keeps_branch = self.branch_step is not None and branch_from is None
        if self.branch_step is not None and len(self.averaged) > 1 and self.averaged[0] <= self.branch_step:
            # The decorr run's own saves start after the branch; the baseline's earlier ones are not its.
            raise ValueError(
                f"train.average_last = {cfg.average_last} averages the saves of steps {self.averaged}, "
                f"but the decorr runs branch off their baselines at step {self.branch_step} "
                f"(decorr.branch_at = {cfg.branch_at}): average fewer saves or branch earlier"
            )
        optimizer = make_optimizer(model, cfg)
        schedule = make_schedule(optimizer, self.total_steps, cfg.lr_decay_share)
        self.step, self.log_rows = training_state.resume(
            model, optimizer, schedule, resume_dir, record, name, self.total_steps
        )
        if self.step == 0 and branch_from is not None:
            assert self.branch_step is not None
            self.step, self.log_rows = training_state.continue_branch(
                model, optimizer, schedule, branch_from, record, name, self.branch_step
            )
        self.loss = math.nan
        # The model as accelerate prepared it (DDP-wrapped when distributed); ``unwrapped`` is the AVSRModel.
        self.model, self.optimizer, self.loader, self.schedule = self.accelerator.prepare(
            model, optimizer, loader, schedule
        )
        self.unwrapped: AVSRModel = self.accelerator.unwrap_model(self.model)
        log.info(
            "training %d trainable parameters for %d steps",
            self.unwrapped.count_trainable(),
            self.total_steps,
        )

    def train_epochs(self, name: str) -> None:
        """The epochs still to train, from the step the run stands at, under a progress bar."""
        progress = tqdm(total=self.total_steps, initial=self.step, desc=f"train {name}", mininterval=5)
        first_epoch, skip = training_state.epoch_position(self.step, self.epoch_steps)
        for epoch in range(first_epoch, self.cfg.epochs):
            self._train_epoch(epoch, skip, progress)
            skip = 0
        progress.close()

    def _train_epoch(self, epoch: int, skip: int, progress: tqdm) -> None:
        """One epoch's steps, leaving out its first ``skip`` batches (those a resumed run already took)."""
        self.model.train()
        batches = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
        # accelerate's loaders re-seed their sampler from their own iteration counter on every pass;
        # set it to the real epoch, so a resumed run sees the same batch order as an uninterrupted one.
        # The loader that skips a resumed epoch's first batches does not pass the epoch on to the
        # sampler (a run resumed inside epoch 2 drew epoch 0's order), so the sampler gets it directly.
        batches.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        for batch in batches:
            self._train_step(batch, epoch, progress)

    def _train_step(self, batch: Mapping[str, Any], epoch: int, progress: tqdm) -> None:
        """One optimisation step and its log row, then the resume save if one is due."""
        cfg, resume_dir = self.cfg, self.resume_dir
        tick = time.perf_counter()
        stop = NonFiniteStep(self.step + 1, self.total_steps, batch["uids"], resume_dir)
        terms = _backward(self.model, self.accelerator, batch, epoch, self.step, cfg, self.augment, stop)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step, self.loss = self.step + 1, terms.loss
        lr = self.schedule.get_last_lr()[0]
        self.log_rows.append(terms.log_row(self.step, epoch, lr, time.perf_counter() - tick))
        progress.update()
        progress.set_postfix(loss=f"{self.loss:.3f}")
        if self.keeps_branch and self.step == self.branch_step:
            assert resume_dir is not None
            self._save_state(resume_dir / training_state.BRANCH, 0)
        if resume_dir is not None and self.step % cfg.checkpoint_every == 0 and self.step < self.total_steps:
            self._save_state(resume_dir, max(cfg.average_last - 2, 0))

    def _save_state(self, folder: Path, snapshots_kept: int) -> None:
        """The run's state at this step into ``folder`` (``snapshots_kept``: the saves before it whose
        weights the average needs)."""
        training_state.save_resume(
            folder,
            self.unwrapped,
            self.optimizer,
            self.schedule,
            self.step,
            self.record,
            self.log_rows,
            snapshots_kept,
        )

    def finish(self, out_dir: Path, start: float) -> dict[str, Any]:
        """Write the checkpoint folder from the final (or averaged) weights, drop the resume state, and
        return the run's summary (``start``: when training began, for its seconds)."""
        # accelerate put its autocast around the model's own forward; whatever runs the model next (a
        # test, a decode in the same process) gets the plain float32 forward back.
        self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        weights = training_state.final_weights(
            self.unwrapped.trainable_state_dict(), self.averaged, self.resume_dir
        )
        summary = {
            "steps": self.step,
            "seconds": time.perf_counter() - start,
            "final_loss": self.loss,
            "averaged_steps": self.averaged,
            "mixed_precision": self.accelerator.mixed_precision,  # bf16 or no, as this machine ran it
            # the step up to which this run is its baseline's (a branching decorr run) or up to which its
            # decorr run is this one (a baseline that keeps its state for it)
            "branch_step": self.branch_step,
        }
        experiment = {
            **self.record,
            "summary": summary,
            "git_commit": git_commit(),
            "trainable_parameters": self.unwrapped.count_trainable(),
        }
        branch = (
            self.resume_dir / training_state.BRANCH
            if self.keeps_branch and self.resume_dir is not None
            else None
        )
        _write_checkpoint(out_dir, weights, self.log_rows, experiment, branch)
        if self.resume_dir is not None:
            shutil.rmtree(self.resume_dir, ignore_errors=True)
        return summary


def _refuse_contradictions(cfg: TrainConfig, resume_dir: Path | None, branch_from: Path | None) -> None:
    if cfg.average_last > 1 and resume_dir is None:
        raise ValueError(
            f"train.average_last = {cfg.average_last} averages saved checkpoints, which live in the "
            "resume folder: pass resume_dir (workflow_scripts/train.py --resume-dir)"
        )
    if branch_from is not None and cfg.branch_at is None:
        raise ValueError(
            f"branch_from = {branch_from}, but decorr.branch_at is null: no step to continue from"
        )
    if cfg.branch_at is not None and branch_from is None and resume_dir is None:
        raise ValueError(
            f"decorr.branch_at = {cfg.branch_at}: the baseline keeps its state for the decorr run in the "
            "resume folder until its checkpoint is written: pass resume_dir (workflow_scripts/train.py "
            "--resume-dir)"
        )
    if cfg.ctc_warmup_steps and not cfg.ctc_weight:
        raise ValueError(
            f"train.ctc_warmup_steps = {cfg.ctc_warmup_steps} trains on the CTC loss alone, but "
            "train.ctc_weight is 0 (no CTC head): set a CTC weight or no warm-up"
        )


def _backward(
    model: Any,
    accelerator: Accelerator,
    batch: Mapping[str, Any],
    epoch: int,
    step: int,
    cfg: TrainConfig,
    augment: FeatureAugmenter | None,
    stop: NonFiniteStep,
) -> StepTerms:
    """One batch's forward pass, loss, backward and gradient clipping; stops (``stop``) on a non-finite
    loss or gradient norm before the optimizer could apply it."""
    warming_up = step < cfg.ctc_warmup_steps
    features = batch["features"] if augment is None else augment(batch["uids"], batch["features"], epoch)
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
    stop.check("loss", total, {"cross-entropy": None if warming_up else out.loss, "CTC": ctc})
    accelerator.backward(total)
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    stop.check("gradient norm", grad_norm, {"decorrelation": decorr})
    loss = math.nan if warming_up else out.loss.item()
    tokens = math.nan if warming_up else int(assembled.attention_mask.sum())
    return StepTerms(loss, ctc, decorr, grad_norm, tokens)


def _write_checkpoint(
    out_dir: Path,
    weights: dict[str, torch.Tensor],
    log_rows: list[list[Any]],
    experiment: Mapping[str, Any],
    branch: Path | None,
) -> None:
    """model.safetensors, train_log.csv, experiment.json and the state kept for the decorr run (``branch``,
    into branch/), renamed into place together."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        if branch is not None:
            shutil.copytree(branch, tmp / training_state.BRANCH)
        with (tmp / "train_log.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(LOG_HEADER)
            writer.writerows(log_rows)
        save_file(weights, str(tmp / "model.safetensors"))
        (tmp / "experiment.json").write_text(json.dumps(experiment, indent=2, sort_keys=True, default=str))
