"""The embedded default's video encoder: viseme targets, padding invariance, save/load, pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from avsr_sinks.data.visemes import BMP, OPEN, ROUND, SIL, visemes_of
from avsr_sinks.encoders.tiny_video import (
    TinyVideoConfig,
    TinyVideoEncoder,
    frame_viseme_targets,
    load_tiny_video_encoder,
    pad_videos,
    save_config,
)

SMALL = TinyVideoConfig(channels=(4, 8), dim=16, temporal_layers=2, temporal_kernel=3)


def test_targets_follow_the_phoneme_timings() -> None:
    timing = {
        "phonemes": [
            {"symbol": "m", "start": 0.04, "end": 0.12},  # frames 1-2 (centres 0.06, 0.10)
            {"symbol": "a:", "start": 0.12, "end": 0.20},  # frames 3-4
        ]
    }
    targets = frame_viseme_targets(timing, 7)
    assert visemes_of("m") == (BMP,) and visemes_of("a:") == (OPEN,)
    assert targets.tolist() == [SIL, BMP, BMP, OPEN, OPEN, SIL, SIL]


def test_diphthong_halves_get_their_own_visemes() -> None:
    ids = visemes_of("aU")
    assert len(ids) == 2 and ids[1] == ROUND
    targets = frame_viseme_targets({"phonemes": [{"symbol": "aU", "start": 0.0, "end": 0.16}]}, 4)
    assert targets.tolist() == [ids[0], ids[0], ids[1], ids[1]]


def test_batched_encoding_equals_one_clip_at_a_time() -> None:
    torch.manual_seed(0)
    model = TinyVideoEncoder(SMALL).eval()
    clips = [torch.randn(n, 1, 88, 88) for n in (9, 4, 6)]
    frames, lengths = pad_videos(clips)
    with torch.no_grad():
        batched = model(frames, lengths)
        for i, clip in enumerate(clips):
            single = model(clip[None], torch.tensor([clip.shape[0]]))[0]
            torch.testing.assert_close(batched[i, : clip.shape[0]], single, atol=1e-5, rtol=1e-5)
            assert batched[i, clip.shape[0] :].abs().sum() == 0


def test_saved_encoder_loads_frozen_with_its_identity(tmp_path: Path) -> None:
    model = TinyVideoEncoder(SMALL)
    save_config(SMALL, tmp_path / "config.json")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    encoder = load_tiny_video_encoder(tmp_path, "tiny")
    assert encoder.identity()["name"] == "tiny" and len(encoder.identity()["weights_sha256"]) == 64
    assert not any(p.requires_grad for p in encoder.model.parameters())
    video = np.random.default_rng(0).integers(0, 256, size=(5, 96, 96), dtype=np.uint8)
    (out,) = encoder.encode([video])
    assert out.shape == (5, SMALL.dim) and encoder.frame_rate == 25
