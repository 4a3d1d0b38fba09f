"""A run spec's training settings as the training loop and the augmenter take them."""

from __future__ import annotations

from avsr_sinks.features.augment import AugmentConfig
from avsr_sinks.modeling.precision import cpu_bf16_autocast
from avsr_sinks.settings.spec import RunSpec
from avsr_sinks.training.train import TrainConfig


def train_config(spec: RunSpec) -> TrainConfig:
    t = spec.train
    return TrainConfig(
        seed=spec.experiment.seed,
        lr=t.lr,
        betas=t.betas,
        weight_decay=t.weight_decay,
        epochs=t.epochs,
        lr_decay_share=t.lr_decay_share,
        max_frames=t.max_frames,
        grad_clip=t.grad_clip,
        checkpoint_every=t.checkpoint_every,
        projector_lr_multiplier=t.projector_lr_multiplier,
        lora_lr_multiplier=t.lora_lr_multiplier,
        ctc_weight=t.ctc_weight,
        ctc_warmup_steps=t.ctc_warmup_steps,
        average_last=t.average_last,
        decorr_lambda=spec.decorr.weight if spec.decorr is not None else 0.0,
        decorr_layers=spec.decorr.layers if spec.decorr is not None else None,
        autocast_bf16_on_cpu=cpu_bf16_autocast(t.autocast_bf16_on_cpu),
        autocast_bf16_on_gpu=t.autocast_bf16_on_gpu,
        branch_at=t.branch_at,
    )


def augment_config(spec: RunSpec) -> AugmentConfig:
    return AugmentConfig(
        noise_probability=spec.train.noise_probability,
        time_mask_max_seconds=spec.train.time_mask_max_seconds,
    )
