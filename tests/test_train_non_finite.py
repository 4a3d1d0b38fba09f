"""A training step whose loss turns NaN stops the run before the step is applied, names the step and the
batch, and keeps the last good resume save, from which a rerun continues to the end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.training import train
from avsr_sinks.training.nonfinite import NonFiniteLossError
from tests.train_job import CONFIG, make_features, toy_model_config

RUN = dataclasses.replace(CONFIG, epochs=1, ctc_warmup_steps=0, checkpoint_every=2, average_last=1)


class Poisoned(FeatureDataset):
    """The toy features, with one utterance's frames NaN."""

    poisoned: str | None = None

    def __getitem__(self, index: int):
        uid, features, transcript = super().__getitem__(index)
        if uid == self.poisoned:
            features = {m: torch.full_like(f, float("nan")) for m, f in features.items()}
        return uid, features, transcript


def model(lm_dir: Path) -> AVSRModel:
    train.seed_everything(RUN.seed)
    return AVSRModel(toy_model_config("tied_embeddings"), *load_llm(lm_dir))


def test_a_nan_step_stops_the_run_and_a_rerun_resumes_from_the_last_good_save(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    transcripts = make_features(tmp_path / "data")
    dataset = Poisoned({"audio": FeatureStore(tmp_path / "data")}, transcripts)
    # The order is the sampler's: poison an utterance of the fourth batch, after the save at step 2.
    sampler = train.FrameBudgetBatchSampler(
        dataset.frame_lengths(), max_frames=RUN.max_frames, shuffle=True, seed=RUN.seed
    )
    sampler.set_epoch(0)
    batches = list(sampler)
    assert len(batches) > 4
    dataset.poisoned = dataset.uids[batches[3][0]]
    out, resume = tmp_path / "out", tmp_path / "resume"
    with pytest.raises(NonFiniteLossError, match=r"training step 4 of \d+: the loss is nan") as err:
        train.train(model(tiny_lm_dir), dataset, RUN, out, {"experiment": "toy"}, resume)
    assert dataset.poisoned in str(err.value) and "step-00000002" in str(err.value)
    assert not out.exists()
    saves = sorted(p.name for p in resume.glob("step-*"))
    assert saves == ["step-00000002"]
    weights = load_file(str(resume / saves[0] / "trainable.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())

    dataset.poisoned = None
    summary = train.train(model(tiny_lm_dir), dataset, RUN, out, {"experiment": "toy"}, resume)
    log = (out / "train_log.csv").read_text().splitlines()
    assert summary["steps"] == len(batches) == len(log) - 1
    assert json.loads((out / "experiment.json").read_text())["experiment"] == "toy"
