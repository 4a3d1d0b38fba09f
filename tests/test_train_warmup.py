"""The CTC warm-up stage (train.ctc_warmup_steps): projectors and CTC head learn first, the LLM is not run."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.training import train
from tests.train_job import CONFIG, make_features, toy_model_config


def toy_model(lm_dir: Path, ctc_head: str | None) -> AVSRModel:
    llm, tokenizer = load_llm(lm_dir)
    return AVSRModel(toy_model_config(ctc_head), llm, tokenizer)


def test_warmup_moves_projector_and_head_and_leaves_lora_alone(tiny_lm_dir: Path, tmp_path: Path) -> None:
    transcripts = make_features(tmp_path / "data")
    dataset = FeatureDataset({"audio": FeatureStore(tmp_path / "data")}, transcripts)
    model = toy_model(tiny_lm_dir, "tied_embeddings")
    before = {name: t.clone() for name, t in model.trainable_state_dict().items()}
    cfg = dataclasses.replace(CONFIG, epochs=1, ctc_warmup_steps=100, average_last=1)  # warm-up only
    train.train(model, dataset, cfg, tmp_path / "ckpt", {"experiment": "toy"})
    after = model.trainable_state_dict()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(n.startswith("projectors.") for n in moved) and any(n.startswith("ctc_head.") for n in moved)
    assert not any("lora_" in n for n in moved)
    with (tmp_path / "ckpt" / "train_log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert all(math.isnan(float(r["loss"])) and float(r["ctc_loss"]) > 0 for r in rows)


def test_warmup_without_a_ctc_loss_is_refused(tiny_lm_dir: Path, tmp_path: Path) -> None:
    transcripts = make_features(tmp_path / "data")
    dataset = FeatureDataset({"audio": FeatureStore(tmp_path / "data")}, transcripts)
    cfg = dataclasses.replace(CONFIG, ctc_weight=0.0, ctc_warmup_steps=3, average_last=1)
    with pytest.raises(ValueError, match="ctc_warmup_steps = 3 .* train.ctc_weight is 0"):
        train.train(toy_model(tiny_lm_dir, None), dataset, cfg, tmp_path / "ckpt", {"experiment": "toy"})
    assert not (tmp_path / "ckpt").exists()
