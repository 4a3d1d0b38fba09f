"""The video encoder named by params: the pipeline's small pretrained encoder, or AV-HuBERT."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from avsr_sinks.encoders import avhubert_encoder, tiny_video


def load_video_encoder(settings: Mapping[str, Any], folder: str | Path, device: str | torch.device = "cpu"):
    """A frozen encoder with ``encode(videos) -> [(T, D)]``, ``identity()`` and ``frame_rate`` (25);
    AV-HuBERT runs on ``device``, the small pretrained encoder on the CPU (it is cheap there)."""
    if settings["source"] == "pretrain":
        return tiny_video.load_tiny_video_encoder(folder, settings["name"])
    return avhubert_encoder.load_video_encoder(folder, device)
