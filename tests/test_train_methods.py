"""Training with the decorrelation loss and with train-time augmentation, on a toy run."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import torch

from avsr_sinks import train
from avsr_sinks.augment import AugmentConfig, FeatureAugmenter
from avsr_sinks.features import FeatureDataset, FeatureStore
from avsr_sinks.model import AVSRModel, load_llm
from tests.train_job import CONFIG, make_features, toy_model_config

PLAIN = dataclasses.replace(CONFIG, epochs=1, ctc_weight=0.0, ctc_warmup_steps=0, average_last=1)


def run(lm_dir: Path, data: Path, out: Path, cfg: train.TrainConfig, augment=None) -> dict[str, torch.Tensor]:
    transcripts = make_features(data)
    dataset = FeatureDataset({"audio": FeatureStore(data)}, transcripts)
    model = AVSRModel(toy_model_config(None), *load_llm(lm_dir))
    train.train(model, dataset, cfg, out, {"experiment": "toy"}, augment=augment)
    return model.trainable_state_dict()


def log_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "train_log.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_decorrelation_loss_is_logged_and_changes_the_weights(tiny_lm_dir: Path, tmp_path: Path) -> None:
    baseline = run(tiny_lm_dir, tmp_path / "data", tmp_path / "base", PLAIN)
    decorr = run(
        tiny_lm_dir, tmp_path / "data", tmp_path / "decorr", dataclasses.replace(PLAIN, decorr_lambda=10.0)
    )
    assert all(float(r["decorr_loss"]) == 0.0 for r in log_rows(tmp_path / "base"))
    rows = log_rows(tmp_path / "decorr")
    assert all(0.0 < float(r["decorr_loss"]) <= 1.0 for r in rows)
    assert any(not torch.equal(baseline[name], decorr[name]) for name in baseline)


def test_augmented_training_is_reproducible_and_differs(tiny_lm_dir: Path, tmp_path: Path) -> None:
    def augmenter() -> FeatureAugmenter:
        return FeatureAugmenter(AugmentConfig(0.0, 0.4), seed=3, frame_rates={"audio": 50.0})

    plain = run(tiny_lm_dir, tmp_path / "data", tmp_path / "plain", PLAIN)
    first = run(tiny_lm_dir, tmp_path / "data", tmp_path / "a1", PLAIN, augmenter())
    second = run(tiny_lm_dir, tmp_path / "data", tmp_path / "a2", PLAIN, augmenter())
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert any(not torch.equal(plain[name], first[name]) for name in plain)
