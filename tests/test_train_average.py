"""The checkpoint as the average of the last saved trainable weights (train.average_last)."""

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
from avsr_sinks.training import train, training_state
from tests.train_job import CONFIG, make_features, toy_model_config

# One epoch of the kill-and-resume job's data (9 steps), on a model without its CTC head.
TOY = dataclasses.replace(CONFIG, epochs=1, ctc_weight=0.0, ctc_warmup_steps=0)


def test_average_state_dicts_is_the_elementwise_mean() -> None:
    states = [
        {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([[0.0]], dtype=torch.bfloat16)},
        {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([[1.0]], dtype=torch.bfloat16)},
        {"w": torch.tensor([5.0, 1.0]), "h": torch.tensor([[2.0]], dtype=torch.bfloat16)},
    ]
    mean = training_state.average_state_dicts(states)
    torch.testing.assert_close(mean["w"], torch.tensor([3.0, 3.0]), rtol=0, atol=0)
    assert mean["h"].dtype == torch.bfloat16 and mean["h"].item() == 1.0
    assert training_state.average_state_dicts(states[:1])["w"].equal(states[0]["w"])


def test_average_state_dicts_refuses_states_that_do_not_match() -> None:
    with pytest.raises(ValueError, match=r"state dict 1 holds other tensors.*\['b'\]"):
        training_state.average_state_dicts(
            [{"a": torch.zeros(2)}, {"a": torch.zeros(2), "b": torch.zeros(1)}]
        )
    with pytest.raises(ValueError, match=r"tensor a: shape \(3,\) in state dict 1, \(2,\) in state dict 0"):
        training_state.average_state_dicts([{"a": torch.zeros(2)}, {"a": torch.zeros(3)}])
    with pytest.raises(ValueError, match="no state dicts"):
        training_state.average_state_dicts([])


def test_averaged_steps_are_the_last_saves_and_the_final_step() -> None:
    assert training_state.averaged_steps(27, 4, 1) == [27]
    assert training_state.averaged_steps(27, 4, 3) == [20, 24, 27]
    assert training_state.averaged_steps(24, 4, 3) == [16, 20, 24]  # no resume save at the final step itself
    with pytest.raises(
        ValueError, match=r"average_last = 4 .* of 12 steps saves 2 \(every train.checkpoint_every = 4"
    ):
        training_state.averaged_steps(12, 4, 4)


@pytest.fixture()
def toy_run(tiny_lm_dir: Path, tmp_path: Path) -> tuple[AVSRModel, FeatureDataset, Path]:
    """The kill-and-resume job's data and its model without the CTC head, for training in this process."""
    transcripts = make_features(tmp_path / "data")
    dataset = FeatureDataset({"audio": FeatureStore(tmp_path / "data")}, transcripts)
    llm, tokenizer = load_llm(tiny_lm_dir)
    return AVSRModel(toy_model_config(None), llm, tokenizer), dataset, tmp_path


def test_checkpoint_is_the_mean_of_the_last_saves(
    toy_run: tuple[AVSRModel, FeatureDataset, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, dataset, root = toy_run
    saved: dict[int, dict[str, torch.Tensor]] = {}
    real_save = training_state.save_resume

    def remembering_save(folder, model, optimizer, schedule, step, *rest):
        saved[step] = {name: t.clone() for name, t in model.trainable_state_dict().items()}
        real_save(folder, model, optimizer, schedule, step, *rest)

    monkeypatch.setattr(training_state, "save_resume", remembering_save)
    cfg = dataclasses.replace(TOY, checkpoint_every=2, average_last=3)
    summary = train.train(model, dataset, cfg, root / "ckpt", {"experiment": "toy"}, root / "resume")
    assert summary["averaged_steps"] == [6, 8, 9] and sorted(saved) == [2, 4, 6, 8]
    final = model.trainable_state_dict()
    expected = {name: (saved[6][name] + saved[8][name] + final[name]) / 3 for name in final}
    got = load_file(str(root / "ckpt/model.safetensors"))
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-6, atol=1e-7)
    assert not got["projectors.audio.0.weight"].equal(final["projectors.audio.0.weight"])
    stored = json.loads((root / "ckpt/experiment.json").read_text())
    assert stored["summary"]["averaged_steps"] == [6, 8, 9]
    assert not (root / "resume").exists()


def test_averaging_refuses_a_run_without_enough_saves_before_training(
    toy_run: tuple[AVSRModel, FeatureDataset, Path],
) -> None:
    model, dataset, root = toy_run
    before = {name: t.clone() for name, t in model.trainable_state_dict().items()}
    cfg = dataclasses.replace(TOY, checkpoint_every=4, average_last=4)
    with pytest.raises(ValueError, match="lower train.average_last or train.checkpoint_every"):
        train.train(model, dataset, cfg, root / "ckpt", {"experiment": "toy"}, root / "resume")
    with pytest.raises(ValueError, match="pass resume_dir"):
        train.train(model, dataset, cfg, root / "ckpt", {"experiment": "toy"}, None)
    assert all(before[n].equal(t) for n, t in model.trainable_state_dict().items())
    assert not (root / "ckpt").exists()


def test_a_fresh_start_clears_saves_of_another_configuration(
    toy_run: tuple[AVSRModel, FeatureDataset, Path],
) -> None:
    model, dataset, root = toy_run
    stale = root / "resume/step-00000100"
    stale.mkdir(parents=True)
    (stale / "trainable.safetensors").write_bytes(b"weights of another run")
    cfg = dataclasses.replace(TOY, checkpoint_every=2, average_last=2)
    # Left in place, the stale save would sort after this run's saves and have them pruned as older.
    summary = train.train(model, dataset, cfg, root / "ckpt", {"experiment": "toy"}, root / "resume")
    assert summary["averaged_steps"] == [8, 9]
    assert load_file(str(root / "ckpt/model.safetensors")).keys() == model.trainable_state_dict().keys()


def test_epoch_position_walks_epochs_of_different_lengths() -> None:
    lengths = [5, 7, 6]
    assert training_state.epoch_position(0, lengths) == (0, 0)
    assert training_state.epoch_position(4, lengths) == (0, 4)
    assert training_state.epoch_position(5, lengths) == (1, 0)
    assert training_state.epoch_position(11, lengths) == (1, 6)
    assert training_state.epoch_position(12, lengths) == (2, 0)
    assert training_state.epoch_position(18, lengths) == (3, 0)  # finished
