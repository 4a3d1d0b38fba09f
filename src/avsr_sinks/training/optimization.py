"""The optimizer of a training run and its learning-rate schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import get_wsd_schedule

from avsr_sinks.modeling.avsr_model import AVSRModel

if TYPE_CHECKING:
    from avsr_sinks.training.train import TrainConfig


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


def make_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, decay_share: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The rate held at its peak, then a half cosine to 0 over the last ``decay_share`` of the steps (no
    warm-up); a share of 1 is one cosine over the whole run."""
    return get_wsd_schedule(
        optimizer,
        num_warmup_steps=0,
        num_decay_steps=max(1, round(decay_share * total_steps)),
        num_training_steps=total_steps,
    )
