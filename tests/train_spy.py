"""Watch the real training step of ``avsr_sinks.training.train.train`` from the outside, for tests that check
what it optimises: the loss it hands to backward, the terms that loss is made of, and what the optimizer
steps with. Nothing in the loop is replaced; the spies record and then call the real functions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator

from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.training import train
from tests.train_job import CONFIG, make_features, toy_model_config

TERMS = ("loss", "ce", "ctc", "decorr")


class TrainingSpy:
    """One dict per training step of ``model``:

    - ``loss``: the value handed to ``accelerator.backward``; ``ce`` (the model's cross-entropy, None in
      the CTC warm-up), ``ctc`` (the model's CTC loss, None without a CTC head) and ``decorr`` (the
      decorrelation loss train computed, None when it computed none), as tensors of the step's graph;
    - ``grad_<term>``: the gradient of each of them with respect to the trainable tensors (zeros where a
      tensor does not reach the term), taken before backward runs, so free of any earlier step;
    - ``stepped``: at ``optimizer.step()``, the gradients the optimizer sees and each parameter group's
      ``lr``, ``betas``, ``weight_decay`` and the names of its tensors.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, model: AVSRModel) -> None:
        self.steps: list[dict[str, Any]] = []
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self._pending: dict[str, Any] = {}
        real_backward, real_decorr, real_step = (
            Accelerator.backward,
            train.decorrelation_loss,
            torch.optim.AdamW.step,
        )
        name_of = {id(p): n for n, p in named}

        def on_forward(module, args, kwargs, output) -> None:
            out, assembled = output
            self._pending = {
                "out": out,
                "assembled": assembled,
                "ce": getattr(out, "loss", None),
                "ctc": out.get("ctc_loss"),
                "decorr": None,
            }

        def decorr_spy(*args, **kwargs) -> torch.Tensor:
            value = real_decorr(*args, **kwargs)
            self._pending["decorr"] = value
            return value

        def backward_spy(accelerator: Accelerator, loss: torch.Tensor, **kwargs) -> None:
            step = dict(self._pending, loss=loss)
            for term in TERMS:
                value = step[term]
                step[f"grad_{term}"] = (
                    None
                    if value is None
                    else torch.autograd.grad(value, self.params, retain_graph=True, materialize_grads=True)
                )
            step["loss"] = loss.detach().clone()
            self.steps.append(step)
            real_backward(accelerator, loss, **kwargs)

        def step_spy(optimizer: torch.optim.AdamW, *args, **kwargs):
            self.steps[-1]["stepped"] = {
                "grads": [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in self.params],
                "groups": [
                    {
                        "lr": group["lr"],
                        "betas": tuple(group["betas"]),
                        "weight_decay": group["weight_decay"],
                        "names": {name_of[id(p)] for p in group["params"]},
                    }
                    for group in optimizer.param_groups
                ],
            }
            return real_step(optimizer, *args, **kwargs)

        model.register_forward_hook(on_forward, with_kwargs=True)
        monkeypatch.setattr(train, "decorrelation_loss", decorr_spy)
        monkeypatch.setattr(Accelerator, "backward", backward_spy)
        monkeypatch.setattr(torch.optim.AdamW, "step", step_spy)


def spy_on_toy_training(
    lm_dir: Path,
    data: Path,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    utterances: int = 6,
    ctc_head: str | None = None,
    **changes: Any,
) -> tuple[TrainingSpy, train.TrainConfig]:
    """Train the toy AVSR model of tests/train_job.py for one epoch over its first ``utterances`` (without
    CTC, warm-up or averaging unless ``changes`` ask for them), watched by a TrainingSpy."""
    transcripts = dict(list(make_features(data).items())[:utterances])
    dataset = FeatureDataset({"audio": FeatureStore(data)}, transcripts)
    model = AVSRModel(toy_model_config(ctc_head), *load_llm(lm_dir))
    spy = TrainingSpy(monkeypatch, model)
    base = {"epochs": 1, "ctc_weight": 0.0, "ctc_warmup_steps": 0, "average_last": 1}
    cfg = dataclasses.replace(CONFIG, **{**base, **changes})
    train.train(model, dataset, cfg, out, {"experiment": "toy"})
    assert len(spy.steps) >= 2
    return spy, cfg
