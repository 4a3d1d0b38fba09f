"""AVDataset outputs and determinism, the padding collate, and the frame-budget batch sampler."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avsr_sinks.data.dataset import AVDataset, Collate, FrameBudgetBatchSampler, collate
from avsr_sinks.data.manifest import read_split
from avsr_sinks.data.noise import NoiseBank
from avsr_sinks.data.transforms import VIDEO_MEAN, VIDEO_STD, time_mask


def test_sample_layout_train_and_test(corpus: Path) -> None:
    utts = read_split(corpus, "train")
    for train in (True, False):
        sample = AVDataset(utts, train=train)[2]
        assert sample["video"].shape == (30, 1, 88, 88) and sample["video"].dtype == torch.float32
        assert sample["audio"].shape == (30 * 640,)
        assert abs(float(sample["audio"].mean())) < 1e-4 and abs(float(sample["audio"].std()) - 1) < 1e-3
        assert sample["uid"] == utts[2].uid and sample["transcript"] == utts[2].transcript
    # Evaluation: centre crop, no mask; background pixels (30/255) normalise to a known value.
    background = (30 / 255 - VIDEO_MEAN) / VIDEO_STD
    video = AVDataset(utts, train=False)[0]["video"]
    assert float(video[:, 0, 0, 0].sub(background).abs().max()) < 0.1


def test_randomness_is_seeded_per_epoch(corpus: Path) -> None:
    utts = read_split(corpus, "train")
    a, b = AVDataset(utts, train=True, seed=1), AVDataset(utts, train=True, seed=1)
    torch.testing.assert_close(a[0]["video"], b[0]["video"])
    torch.testing.assert_close(a[0]["audio"], b[0]["audio"])
    b.set_epoch(1)
    assert not torch.equal(a[0]["video"], b[0]["video"])
    e1, e2 = AVDataset(utts, train=False), AVDataset(utts, train=False, seed=9)
    torch.testing.assert_close(e1[1]["video"], e2[1]["video"])


def test_single_modalities(corpus: Path) -> None:
    utts = read_split(corpus, "val")
    audio_only = AVDataset(utts, train=False, modalities=["audio"])[0]
    assert "video" not in audio_only and audio_only["audio"].ndim == 1
    video_only = AVDataset(utts, train=False, modalities=["video"])[0]
    assert "audio" not in video_only and video_only["video"].shape[1:] == (1, 88, 88)
    with pytest.raises(ValueError, match="modalities"):
        AVDataset(utts, train=False, modalities=["smell"])


def test_time_mask_is_seeded_and_bounded() -> None:
    x = torch.ones(100, 3)
    m1 = time_mask(x, 10, 25, torch.Generator().manual_seed(0))
    m2 = time_mask(x, 10, 25, torch.Generator().manual_seed(0))
    torch.testing.assert_close(m1, m2)
    assert int((m1[:, 0] == 0).sum()) <= 4 * 9 and torch.equal(x, torch.ones(100, 3))


def test_collate_pads_with_masks(corpus: Path) -> None:
    ds = AVDataset(read_split(corpus, "train"), train=False)
    batch = collate([ds[1], ds[2]])
    assert batch["video"].shape == (2, 30, 1, 88, 88) and batch["audio"].shape == (2, 30 * 640)
    assert batch["video_lengths"].tolist() == [20, 30] and batch["audio_lengths"].tolist() == [12800, 19200]
    assert batch["video_mask"].sum(1).tolist() == [20, 30] and not batch["video_mask"][0, 20:].any()
    assert float(batch["video"][0, 20:].abs().sum()) == 0 and batch["skipped"] == []


def test_dataloader_with_noise(corpus: Path) -> None:
    train = read_split(corpus, "train")
    bank = NoiseBank(train, n_speakers=2, seconds=1.0, seed=0)
    ds = AVDataset(read_split(corpus, "test"), train=False, noise=bank, snr_db=[0.0, 5.0])
    sampler = FrameBudgetBatchSampler(ds.lengths, max_frames=60, shuffle=False)
    batches = list(DataLoader(ds, batch_sampler=sampler, collate_fn=Collate()))
    assert sum(len(b["uids"]) for b in batches) == 3
    assert set(torch.cat([b["snr_db"] for b in batches]).tolist()) <= {0.0, 5.0}


@pytest.mark.parametrize("rule", ["padded", "sum"])
def test_sampler_budget_coverage_determinism(rule: str) -> None:
    lengths = np.random.default_rng(0).integers(10, 150, 500)
    sampler = FrameBudgetBatchSampler(lengths, max_frames=600, seed=3, bucket_size=100, rule=rule)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(500))
    for b in first:
        cost = max(lengths[b]) * len(b) if rule == "padded" else sum(lengths[b])
        assert cost <= 600
    assert first == list(FrameBudgetBatchSampler(lengths, 600, seed=3, bucket_size=100, rule=rule))
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(i for b in second for i in b) == list(range(500))
    assert len(sampler) == len(second)
    # Bucketing keeps padding small: padded frames stay a minor share of the batch tensors.
    padded = sum(max(lengths[b]) * len(b) for b in first)
    assert padded / lengths.sum() < 1.15


def test_sampler_unshuffled_sorted_and_overlong(caplog: pytest.LogCaptureFixture) -> None:
    lengths = [5, 50, 3, 400, 7]
    with caplog.at_level(logging.WARNING):
        sampler = FrameBudgetBatchSampler(lengths, max_frames=100, shuffle=False)
    assert "exceed max_frames=100" in caplog.text and "[3]" in caplog.text
    batches = list(sampler)
    assert [3] in batches and sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
