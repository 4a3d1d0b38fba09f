"""The real training step against what it should optimise (PAPER.md section 3 plus the recipe's CTC term):
the loss it backpropagates is the cross-entropy plus the weighted CTC and decorrelation terms; the
optimizer steps on that loss's own gradients clipped to train.grad_clip, with each parameter group's
learning rate on the cosine schedule, its betas and its weight decay; and the per-step log holds the terms
as they were computed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from avsr_sinks.training import train
from tests.train_spy import TrainingSpy, spy_on_toy_training

# Between the toy run's pre-clip gradient norms (about 0.6 to 2.5), so that some steps are clipped and
# some are not.
GRAD_CLIP = 1.0


@pytest.fixture(scope="module")
def watched(
    tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingSpy, train.TrainConfig, Path]:
    """One epoch over 8 toy utterances with all three loss terms, run once for the module."""
    root = tmp_path_factory.mktemp("train-step")
    with pytest.MonkeyPatch.context() as monkeypatch:
        spy, cfg = spy_on_toy_training(
            tiny_lm_dir,
            root / "data",
            root / "out",
            monkeypatch,
            utterances=8,
            ctc_head="linear",
            ctc_weight=0.5,
            decorr_lambda=0.5,
            grad_clip=GRAD_CLIP,
        )
    # Distinct settings, none of them AdamW's default, or a swapped or dropped one would not show.
    assert cfg.projector_lr_multiplier != cfg.lora_lr_multiplier
    assert cfg.betas != (0.9, 0.999) and cfg.weight_decay != 0.01
    return spy, cfg, root / "out"


def total_norm(tensors: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> float:
    return float(torch.cat([t.flatten() for t in tensors]).norm())


def test_the_loss_is_the_cross_entropy_plus_the_weighted_ctc_and_decorrelation_terms(watched) -> None:
    spy, cfg, _ = watched
    for step in spy.steps:
        assert step["ce"] is not None and step["ctc"] is not None and step["decorr"] is not None
        expected = step["ce"] + cfg.ctc_weight * step["ctc"] + cfg.decorr_lambda * step["decorr"]
        torch.testing.assert_close(step["loss"], expected.detach(), rtol=1e-6, atol=0.0)
        for got, ce, ctc, decorr in zip(
            step["grad_loss"], step["grad_ce"], step["grad_ctc"], step["grad_decorr"], strict=True
        ):
            want = ce + cfg.ctc_weight * ctc + cfg.decorr_lambda * decorr
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_the_optimizer_steps_on_this_steps_gradients_clipped_to_grad_clip(watched) -> None:
    spy, cfg, _ = watched
    clipped = 0
    for step in spy.steps:
        fresh = step["grad_loss"]  # this step's gradients alone, before backward accumulated them
        norm = total_norm(fresh)
        scale = min(1.0, cfg.grad_clip / (norm + 1e-6))  # torch.nn.utils.clip_grad_norm_'s coefficient
        for got, grad in zip(step["stepped"]["grads"], fresh, strict=True):
            # Float32 roundoff between the two orders of summation reaches a few 1e-7 on gradients of
            # about 0.03; a missing or wrong clip is off by tens of percent.
            torch.testing.assert_close(got, grad * scale, rtol=1e-4, atol=1e-6)
        clipped += norm > cfg.grad_clip
    assert 0 < clipped < len(spy.steps), "the run must have steps above and below grad_clip"


def test_parameter_groups_follow_the_multipliers_and_the_cosine_schedule(watched) -> None:
    spy, cfg, _ = watched
    names = set(spy.names)
    projector = frozenset(n for n in names if n.startswith(("projectors.", "ctc_head.")))
    adapter = frozenset(names - projector)
    assert any(n.startswith("ctc_head.") for n in projector) and all("lora_" in n for n in adapter)
    for k, step in enumerate(spy.steps):
        groups = {frozenset(g["names"]): g for g in step["stepped"]["groups"]}
        assert set(groups) == {projector, adapter}
        # transformers' cosine schedule without warm-up: lr x (1 + cos(pi k / total)) / 2 at step k.
        factor = 0.5 * (1 + math.cos(math.pi * k / len(spy.steps)))
        assert groups[projector]["lr"] == pytest.approx(cfg.lr * cfg.projector_lr_multiplier * factor)
        assert groups[adapter]["lr"] == pytest.approx(cfg.lr * cfg.lora_lr_multiplier * factor)
        for group in groups.values():
            assert group["betas"] == cfg.betas and group["weight_decay"] == cfg.weight_decay


def test_the_log_holds_each_term_and_the_gradient_norm_of_its_step(watched) -> None:
    spy, _, out = watched
    with (out / "train_log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == list(range(1, len(spy.steps) + 1))
    for row, step in zip(rows, spy.steps, strict=True):
        # Rounded as written: 5 decimals for the losses, 6 for the decorrelation loss, 4 for the norm.
        assert float(row["loss"]) == pytest.approx(step["ce"].item(), abs=1e-5)
        assert float(row["ctc_loss"]) == pytest.approx(step["ctc"].item(), abs=1e-5)
        assert float(row["decorr_loss"]) == pytest.approx(step["decorr"].item(), abs=1e-6)
        assert float(row["grad_norm"]) == pytest.approx(total_norm(step["grad_loss"]), abs=2e-4)
    summary = json.loads((out / "experiment.json").read_text())["summary"]
    assert summary["steps"] == len(spy.steps)
    assert summary["final_loss"] == pytest.approx(spy.steps[-1]["ce"].item(), rel=1e-6)


def test_the_ctc_warm_up_backpropagates_the_ctc_loss_alone(
    tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy, cfg = spy_on_toy_training(
        tiny_lm_dir,
        tmp_path / "data",
        tmp_path / "out",
        monkeypatch,
        utterances=8,
        ctc_head="linear",
        ctc_weight=0.5,
        ctc_warmup_steps=2,
        decorr_lambda=0.5,
    )
    warm_up, after = spy.steps[: cfg.ctc_warmup_steps], spy.steps[cfg.ctc_warmup_steps :]
    assert after, "the run must outlast its warm-up"
    for step in warm_up:  # the LLM is not run, so there is neither a cross-entropy nor a decorrelation loss
        assert step["ce"] is None and step["decorr"] is None
        assert torch.equal(step["loss"], step["ctc"].detach())  # unweighted: it is the only term
    for step in after:
        expected = step["ce"] + cfg.ctc_weight * step["ctc"] + cfg.decorr_lambda * step["decorr"]
        torch.testing.assert_close(step["loss"], expected.detach(), rtol=1e-6, atol=0.0)
