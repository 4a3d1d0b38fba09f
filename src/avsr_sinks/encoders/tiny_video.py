"""The embedded default's video encoder: a small lip-reading network pretrained by the pipeline.

It stands in for AV-HuBERT Large on 2 CPU cores: a per-frame 2-D CNN over the 88x88 grey mouth crop
(halved to 44x44 first: the synthetic mouths carry no finer detail) followed by residual temporal
convolutions, giving one ``dim``-wide vector per 25 fps frame, like AV-HuBERT. It is pretrained on the
synthetic training split to name, frame by frame, the viseme the generator rendered (its timing files
hold every phoneme's start and end), then frozen.

Padding never leaks into a sample: every temporal layer zeroes the padded frames of its input, so a
batched pass equals one sample at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from avsr_sinks.data.transforms import VideoTransform
from avsr_sinks.data.visemes import SIL, VISEMES, visemes_of
from avsr_sinks.io import sha256_file

FRAME_RATE = 25


@dataclass(frozen=True)
class TinyVideoConfig:
    channels: tuple[int, ...] = (16, 32, 64, 128)  # per stride-2 conv stage of the frame CNN
    dim: int = 256  # output width per frame
    temporal_layers: int = 2
    temporal_kernel: int = 5
    num_visemes: int = len(VISEMES)


class _TemporalBlock(nn.Module):
    """Pre-norm residual 1-D convolution over frames."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), mask: (B, T, 1) with 1 on real frames."""
        h = (self.norm(x) * mask).transpose(1, 2)  # (B, D, T)
        return x + torch.relu(self.conv(h)).transpose(1, 2) * mask


class TinyVideoEncoder(nn.Module):
    def __init__(self, cfg: TinyVideoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stages: list[nn.Module] = [nn.AvgPool2d(2)]
        width = 1
        for i, out in enumerate(cfg.channels):
            kernel = 5 if i == 0 else 3
            stages += [
                nn.Conv2d(width, out, kernel, stride=2, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            width = out
        stages += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, cfg.dim)]
        self.frontend = nn.Sequential(*stages)
        self.temporal = nn.ModuleList(
            _TemporalBlock(cfg.dim, cfg.temporal_kernel) for _ in range(cfg.temporal_layers)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        # Used only in pretraining; kept in the weights so the pretraining accuracy can be re-measured.
        self.viseme_head = nn.Linear(cfg.dim, cfg.num_visemes)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, 88, 88) normalised crops, (B,) valid lengths -> (B, T, dim), zero past each length."""
        batch, time = frames.shape[:2]
        mask = (torch.arange(time, device=frames.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        mask = mask.to(frames.dtype)  # (B, T, 1)
        x = self.frontend(frames.flatten(0, 1)).view(batch, time, -1) * mask
        for block in self.temporal:
            x = block(x, mask)
        return self.norm(x) * mask


def frame_viseme_targets(timing: Mapping[str, Any], n_frames: int) -> torch.Tensor:
    """The viseme the generator rendered at the centre of each 25 fps frame; silence between phonemes.

    A diphthong names two visemes, one for each half of its span.
    """
    targets = torch.full((n_frames,), SIL, dtype=torch.long)
    centres = (np.arange(n_frames) + 0.5) / FRAME_RATE
    for phoneme in timing["phonemes"]:
        start, end = phoneme["start"], phoneme["end"]
        ids = visemes_of(phoneme["symbol"])
        inside = np.flatnonzero((centres >= start) & (centres < end))
        for i in inside:
            half = min(int((centres[i] - start) / (end - start) * len(ids)), len(ids) - 1)
            targets[i] = ids[half]
    return targets


def pad_videos(videos: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T_i, 1, H, W) tensors -> (B, T_max, 1, H, W) zero-padded, (B,) lengths."""
    lengths = torch.tensor([v.shape[0] for v in videos])
    out = videos[0].new_zeros((len(videos), int(lengths.max()), *videos[0].shape[1:]))
    for i, v in enumerate(videos):
        out[i, : v.shape[0]] = v
    return out, lengths


class FrozenTinyVideoEncoder:
    """The pretrained encoder behind the feature cache's interface (``encode``, ``identity``)."""

    frame_rate = FRAME_RATE

    def __init__(self, model: TinyVideoEncoder, name: str, weights_sha256: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self.name, self.weights_sha256 = name, weights_sha256
        self.transform = VideoTransform(train=False)
        self.output_dim = model.cfg.dim

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256}

    @torch.inference_mode()
    def encode(self, videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """uint8 (T, H, W) mouth videos -> one (T, dim) tensor each."""
        frames, lengths = pad_videos([self.transform(v) for v in videos])
        out = self.model(frames, lengths)
        return [out[i, :n] for i, n in enumerate(lengths.tolist())]


def save_config(cfg: TinyVideoConfig, path: Path) -> None:
    path.write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")


def load_tiny_video_encoder(folder: str | Path, name: str) -> FrozenTinyVideoEncoder:
    """The frozen encoder from ``config.json`` + ``model.safetensors`` written by its pretraining."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"no video encoder at {folder}: expected config.json and model.safetensors; for the embedded "
            "default run the pipeline's pretrain_video_encoder rule first"
        )
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg = TinyVideoConfig(**{**raw, "channels": tuple(raw["channels"])})
    model = TinyVideoEncoder(cfg)
    model.load_state_dict(load_file(str(weights)))
    digest = sha256_file(weights)
    return FrozenTinyVideoEncoder(model, name, digest)
