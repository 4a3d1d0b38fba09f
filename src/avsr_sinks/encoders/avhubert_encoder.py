"""The frozen AV-HuBERT video encoder: a folder written by the converter
(:mod:`avsr_sinks.encoders.avhubert_convert`) loaded for inference, and mouth videos encoded in batches."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from avsr_sinks.data.transforms import VideoTransform
from avsr_sinks.encoders.avhubert import (
    FRAME_RATE,
    MODEL_TYPE,
    AVHubertConfig,
    AVHubertModel,
    padding_mask_from_lengths,
)
from avsr_sinks.io import load_state_exactly, sha256_file

log = logging.getLogger(__name__)


class VideoEncoder:
    """A frozen AV-HuBERT on video only, with the interface of the Whisper AudioEncoder."""

    def __init__(self, model: AVHubertModel, model_dir: Path, weight_file: Path) -> None:
        self.model = model.eval().requires_grad_(False)
        self.transform = VideoTransform(train=False)
        self.model_dir = model_dir
        self._weight_file = weight_file
        self._weights_sha256: str | None = None

    @property
    def d_model(self) -> int:
        return self.model.config.encoder_embed_dim

    @property
    def frame_rate(self) -> int:
        return FRAME_RATE

    def identity(self) -> dict[str, Any]:
        """What the features depend on, for cache manifests (JSON-serialisable)."""
        if self._weights_sha256 is None:
            self._weights_sha256 = sha256_file(self._weight_file)
        return {
            "name": self.model_dir.name,
            "source": str(self.model_dir),
            "weights_sha256": self._weights_sha256,
        }

    def encode(self, videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Encode decoded mouth videos in one batch, the interface the feature cache calls.

        Args:
            videos: uint8 (T_i, H, W) grey or (T_i, H, W, 3) colour frames, at least 88 x 88, as
                ``read_video`` returns them. Each is centre-cropped to 88 x 88, made grey, scaled to
                [0, 1] and normalised with AV-HuBERT's mean and std (``VideoTransform(train=False)``).

        Returns:
            one float32 CPU tensor (T_i, d_model) per video.
        """
        clips = []
        for i, video in enumerate(videos):
            if np.asarray(video).dtype != np.uint8:
                raise ValueError(
                    f"video {i} has dtype {np.asarray(video).dtype}; expected decoded uint8 frames as "
                    "read_video returns them (use encode_frames for normalised clips)"
                )
            clips.append(self.transform(video))
        return self.encode_frames(clips)

    def encode_frames(self, clips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Encode normalised (T_i, 1, H, W) float clips of one frame size in one zero-padded batch."""
        for i, clip in enumerate(clips):
            if clip.ndim != 4 or clip.shape[0] == 0 or clip.shape[1] != 1 or not clip.is_floating_point():
                raise ValueError(
                    f"clip {i} has shape {tuple(clip.shape)} and dtype {clip.dtype}; expected float "
                    "(T, 1, H, W) frames normalised like VideoTransform(train=False) does"
                )
            if clip.shape[1:] != clips[0].shape[1:]:
                raise ValueError(
                    f"clip {i} has {tuple(clip.shape[1:])} frames, clip 0 {tuple(clips[0].shape[1:])}"
                )
        if not clips:
            return []
        lengths = [c.shape[0] for c in clips]
        # Padded frames are zeros, what the 3-D stem's own zero padding shows an unpadded clip's border.
        batch = torch.zeros(len(clips), 1, max(lengths), *clips[0].shape[2:])
        for i, c in enumerate(clips):
            batch[i, 0, : c.shape[0]] = c[:, 0]
        device = self.model.post_extract_proj.weight.device
        mask = padding_mask_from_lengths(lengths, max(lengths))
        with torch.inference_mode():
            feats, _ = self.model(video=batch.to(device), padding_mask=mask.to(device))
        # A copy per clip, so that no returned tensor keeps the whole batch alive.
        return [feats[i, :n].to("cpu", copy=True) for i, n in enumerate(lengths)]


def load_video_encoder(model_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> VideoEncoder:
    """Load a folder written by :func:`convert_avhubert` as a frozen, eval-mode encoder on ``device``."""
    model_dir = Path(model_dir)
    config_file, weight_file = model_dir / "config.json", model_dir / "model.safetensors"
    if not config_file.is_file() or not weight_file.is_file():
        raise FileNotFoundError(
            f"{model_dir}: no converted AV-HuBERT here (config.json and model.safetensors needed). Put "
            "the fairseq checkpoint (large_vox_iter5.pt) on disk and run `python "
            f"workflow_scripts/convert_avhubert.py --checkpoint large_vox_iter5.pt --out {model_dir}`"
        )
    raw = json.loads(config_file.read_text(encoding="utf-8"))
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{config_file}: describes a {raw.get('model_type')!r} model, not {MODEL_TYPE}")
    config = AVHubertConfig(**{f.name: raw[f.name] for f in fields(AVHubertConfig)})
    model = AVHubertModel(config)
    state = load_file(str(weight_file))
    load_state_exactly(model, state, weight_file, f"the model of {config_file}")
    model.to(device)
    log.info(
        "loaded AV-HuBERT from %s (%d layers, d_model %d)",
        model_dir,
        config.encoder_layers,
        config.encoder_embed_dim,
    )
    return VideoEncoder(model, model_dir, weight_file)
