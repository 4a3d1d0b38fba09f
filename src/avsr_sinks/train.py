"""Training loop for the projectors and LoRA adapters (accelerate: fp32 on CPU, bf16 on GPU, DDP)."""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from avsr_sinks.data.dataset import FrameBudgetBatchSampler
from avsr_sinks.features import FeatureDataset, collate_features
from avsr_sinks.io import atomic_path, git_commit
from avsr_sinks.model import AVSRModel

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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: AVSRModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable tensors; projectors may get their own learning rate."""
    projector, adapter = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (projector if name.startswith("projectors.") else adapter).append(param)
    groups = [
        {"params": adapter, "lr": cfg.lr},
        {"params": projector, "lr": cfg.lr * cfg.projector_lr_multiplier},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], betas=cfg.betas, weight_decay=cfg.weight_decay
    )


def train(
    model: AVSRModel, dataset: FeatureDataset, cfg: TrainConfig, out_dir: Path, record: Mapping[str, Any]
) -> dict[str, Any]:
    """Train and write the checkpoint folder (model.safetensors, experiment.json, train_log.csv) atomically.

    Args:
        model: the AVSR model; only its trainable tensors are updated and saved.
        dataset: training utterances with cached features.
        cfg: optimisation settings.
        out_dir: the checkpoint folder to create.
        record: the experiment's resolved configuration, stored in experiment.json.
    """
    seed_everything(cfg.seed)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision="bf16" if torch.cuda.is_available() else "no"
    )
    sampler = FrameBudgetBatchSampler(
        dataset.frame_lengths(), max_frames=cfg.max_frames, shuffle=True, seed=cfg.seed
    )
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_features)
    total_steps = cfg.epochs * len(sampler)
    optimizer = make_optimizer(model, cfg)
    schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total_steps)
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    log.info(
        "training %d trainable parameters for %d steps",
        accelerator.unwrap_model(model).count_trainable(),
        total_steps,
    )
    step, start = 0, time.perf_counter()
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        with (tmp / "train_log.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"])
            progress = tqdm(total=total_steps, desc=f"train {out_dir.name}", mininterval=5)
            for epoch in range(cfg.epochs):
                sampler.set_epoch(epoch)
                model.train()
                for batch in loader:
                    tick = time.perf_counter()
                    out, assembled = model(batch["features"], batch["transcripts"])
                    accelerator.backward(out.loss)
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    tokens = int(assembled.attention_mask.sum())
                    writer.writerow(
                        [
                            step,
                            epoch,
                            f"{out.loss.item():.5f}",
                            f"{schedule.get_last_lr()[0]:.3e}",
                            f"{float(grad_norm):.4f}",
                            f"{tokens / (time.perf_counter() - tick):.0f}",
                        ]
                    )
                    progress.update()
                    progress.set_postfix(loss=f"{out.loss.item():.3f}")
            progress.close()
        summary = {
            "steps": step,
            "seconds": time.perf_counter() - start,
            "final_loss": out.loss.item() if step else math.nan,
        }
        unwrapped = accelerator.unwrap_model(model)
        save_file(unwrapped.trainable_state_dict(), str(tmp / "model.safetensors"))
        experiment = {
            **record,
            "summary": summary,
            "git_commit": git_commit(),
            "trainable_parameters": unwrapped.count_trainable(),
        }
        (tmp / "experiment.json").write_text(json.dumps(experiment, indent=2, sort_keys=True, default=str))
    return summary
