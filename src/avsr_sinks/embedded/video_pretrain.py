"""Pretraining of the embedded default's video encoder: frame-level viseme classification.

The synthetic generator writes, next to each clip, the timing of every phoneme it rendered; the encoder
learns to name the viseme of each 25 fps frame (see ``encoders.tiny_video``). Only the training split
is learned from; the validation split measures frame accuracy. Clips are decoded once and kept in memory
as uint8 (about 0.6 MB per second of video).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from avsr_sinks.data.dataset import FrameBudgetBatchSampler
from avsr_sinks.data.manifest import Utterance
from avsr_sinks.data.media import read_video
from avsr_sinks.data.transforms import VideoTransform
from avsr_sinks.data.visemes import VISEMES
from avsr_sinks.encoders.tiny_video import (
    TinyVideoConfig,
    TinyVideoEncoder,
    frame_viseme_targets,
    pad_videos,
    save_config,
)
from avsr_sinks.io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoPretrainConfig:
    seed: int
    epochs: int
    lr: float
    max_frames: int  # batch budget in frames (padded)
    channels: tuple[int, ...]
    dim: int
    temporal_layers: int
    temporal_kernel: int

    def encoder_config(self) -> TinyVideoConfig:
        return TinyVideoConfig(
            channels=tuple(self.channels),
            dim=self.dim,
            temporal_layers=self.temporal_layers,
            temporal_kernel=self.temporal_kernel,
        )


def timing_path(utterance: Utterance) -> Path:
    return utterance.video_path.with_suffix(".json")


def load_clips(utterances: Sequence[Utterance]) -> list[tuple[np.ndarray, torch.Tensor]]:
    """Each utterance's uint8 (T, H, W) video and its (T,) frame viseme targets."""
    clips = []
    for utt in tqdm(utterances, desc="decode clips", mininterval=5):
        path = timing_path(utt)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no phoneme timing file for {utt.uid}; the video encoder is pretrained on a "
                "synthetic corpus, whose generator writes one JSON per clip"
            )
        video = read_video(utt.video_path)
        clips.append((video, frame_viseme_targets(json.loads(path.read_text(encoding="utf-8")), len(video))))
    return clips


def _batch(
    clips: Sequence[tuple[np.ndarray, torch.Tensor]],
    transform: VideoTransform,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    frames, lengths = pad_videos([transform(video, generator) for video, _ in clips])
    targets = torch.full(frames.shape[:2], -100, dtype=torch.long)
    for i, (_, t) in enumerate(clips):
        targets[i, : t.shape[0]] = t
    return frames, lengths, targets


@torch.inference_mode()
def frame_accuracy(model: TinyVideoEncoder, clips: Sequence[tuple[np.ndarray, torch.Tensor]]) -> dict:
    """Share of frames whose viseme is named right, overall and per viseme."""
    model.eval()
    transform = VideoTransform(train=False)
    confusion = torch.zeros(len(VISEMES), len(VISEMES), dtype=torch.long)
    for start in range(0, len(clips), 16):
        frames, lengths, targets = _batch(clips[start : start + 16], transform, None)
        predicted = model.viseme_head(model(frames, lengths)).argmax(-1)
        valid = targets != -100
        confusion.index_put_(
            (targets[valid], predicted[valid]),
            torch.ones(int(valid.sum()), dtype=torch.long),
            accumulate=True,
        )
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    return {
        "frame_accuracy": float(confusion.diag().sum() / confusion.sum()),
        "per_viseme_accuracy": {name: round(float(a), 4) for name, a in zip(VISEMES, per_class, strict=True)},
        "frames": int(confusion.sum()),
    }


def pretrain_video_encoder(
    cfg: VideoPretrainConfig,
    train: Sequence[Utterance],
    val: Sequence[Utterance],
    out_dir: Path,
    log_path: Path,
) -> dict[str, Any]:
    """Train the encoder + viseme head, write ``out_dir`` (config.json, model.safetensors) atomically and
    a per-step CSV log; return the summary with validation frame accuracy."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_clips, val_clips = load_clips(train), load_clips(val)
    model = TinyVideoEncoder(cfg.encoder_config())
    # No time masking: a masked frame still carries its viseme label, which would teach guessing.
    transform = VideoTransform(train=True, time_masking=False)
    sampler = FrameBudgetBatchSampler([len(v) for v, _ in train_clips], cfg.max_frames, seed=cfg.seed)
    total = cfg.epochs * len(sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(100, total // 10), total)
    log.info(
        "pretraining the video encoder (%d parameters) for %d steps",
        sum(p.numel() for p in model.parameters()),
        total,
    )
    start, step, loss = time.perf_counter(), 0, math.nan
    with atomic_path(log_path) as tmp_log, tmp_log.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "epoch", "loss", "lr", "frames_per_s"])
        progress = tqdm(total=total, desc="pretrain video encoder", mininterval=5)
        for epoch in range(cfg.epochs):
            model.train()
            sampler.set_epoch(epoch)
            for indices in sampler:
                tick = time.perf_counter()
                frames, lengths, targets = _batch([train_clips[i] for i in indices], transform, generator)
                logits = model.viseme_head(model(frames, lengths))
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                rate = int(lengths.sum()) / (time.perf_counter() - tick)
                writer.writerow(
                    [step, epoch, f"{loss.item():.5f}", f"{schedule.get_last_lr()[0]:.3e}", f"{rate:.0f}"]
                )
                progress.update()
        progress.close()
    summary = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": step,
        "final_loss": loss.item(),
        "train_utterances": len(train_clips),
        "val": frame_accuracy(model, val_clips),
        "seconds": time.perf_counter() - start,
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_config(model.cfg, tmp / "config.json")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    return summary
