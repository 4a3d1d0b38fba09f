"""Training with the decorrelation loss and with train-time augmentation, on a toy run."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from avsr_sinks.features.augment import AugmentConfig, FeatureAugmenter
from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.training import train
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


@pytest.mark.parametrize("decay_share", [1.0, 0.5])
def test_the_rate_holds_at_its_peak_then_falls_to_zero_over_the_decay_share(
    tiny_lm_dir: Path, tmp_path: Path, decay_share: float
) -> None:
    cfg = dataclasses.replace(PLAIN, epochs=3, lr_decay_share=decay_share)
    run(tiny_lm_dir, tmp_path / "data", tmp_path / "run", cfg)
    logged = [float(r["lr"]) for r in log_rows(tmp_path / "run")]
    total, peak = len(logged), cfg.lr * cfg.lora_lr_multiplier
    decay_steps = round(decay_share * total)
    # the rate each step leaves for the next: held at the peak, then a half cosine down to 0
    expected = [
        peak * 0.5 * (1 + math.cos(math.pi * max(0, step - (total - decay_steps)) / decay_steps))
        for step in range(1, total + 1)
    ]
    assert total >= 8
    assert logged == pytest.approx(expected, rel=1e-3, abs=1e-9)


def test_augmented_training_is_reproducible_and_differs(tiny_lm_dir: Path, tmp_path: Path) -> None:
    def augmenter() -> FeatureAugmenter:
        return FeatureAugmenter(AugmentConfig(0.0, 0.4), seed=3, frame_rates={"audio": 50.0})

    plain = run(tiny_lm_dir, tmp_path / "data", tmp_path / "plain", PLAIN)
    first = run(tiny_lm_dir, tmp_path / "data", tmp_path / "a1", PLAIN, augmenter())
    second = run(tiny_lm_dir, tmp_path / "data", tmp_path / "a2", PLAIN, augmenter())
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert any(not torch.equal(plain[name], first[name]) for name in plain)


def test_warm_start_takes_each_tensor_from_the_first_checkpoint_that_holds_it(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    from avsr_sinks.modeling.checkpoints import warm_start

    model = AVSRModel(toy_model_config(None), *load_llm(tiny_lm_dir))
    state = model.trainable_state_dict()
    projector = [n for n in state if n.startswith("projectors.")]
    lora = [n for n in state if "lora_" in n]
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, names, value in ((first, projector, 1.0), (second, projector + lora, 2.0)):
        folder.mkdir()
        save_file({n: torch.full_like(state[n], value) for n in names}, str(folder / "model.safetensors"))
    taken = warm_start(model, [first, second])
    after = model.trainable_state_dict()
    assert all(after[n].eq(1.0).all() and taken[n] == str(first) for n in projector)
    assert all(after[n].eq(2.0).all() and taken[n] == str(second) for n in lora)
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({projector[0]: torch.zeros(3, 3)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=f"bad/model.safetensors: tensor {projector[0]} has shape"):
        warm_start(model, [bad])
    with pytest.raises(FileNotFoundError, match="not finished"):
        warm_start(model, [tmp_path / "missing"])


def test_warm_start_sources_follow_the_rates_and_must_be_in_the_grid() -> None:
    from avsr_sinks.settings.config import load_params
    from avsr_sinks.settings.grid import parse_name
    from avsr_sinks.settings.spec import warm_start_sources
    from tests.conftest import REPO

    params = load_params([REPO / "params.yaml"])
    params["train"]["warm_start"] = {"asr": [], "vsr": [], "avsr": ["asr", "vsr"]}
    params["decorr"]["branch_at"] = None  # a decorr run that continues its baseline starts from no other
    params["grid"] |= {
        "asr_audio_rates": [4, 16],
        "vsr_video_rates": [2, 5],
        "avsr_rates": [[4, 2], [16, 5]],
        "methods": ["baseline", "decorr", "act"],
    }
    sources = warm_start_sources(params, parse_name("avsr-a16v5-decorr-s0"))
    assert [s.name for s in sources] == ["asr-a16-decorr-s0", "vsr-v5-decorr-s0"]
    assert [s.name for s in warm_start_sources(params, parse_name("avsr-a4v2-act-s0"))] == [
        "asr-a4-baseline-s0",
        "vsr-v2-baseline-s0",
    ]
    params["grid"]["vsr_video_rates"] = [2]
    with pytest.raises(ValueError, match="vsr-v5-baseline-s0, which is not in the grid"):
        warm_start_sources(params, parse_name("avsr-a16v5-baseline-s0"))
