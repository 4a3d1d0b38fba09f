"""The decorrelation loss against PAPER.md section 3, written out with explicit loops, and its weight in the
real training step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from avsr_sinks.modeling.segments import Segment
from avsr_sinks.training.losses import decorrelation_loss
from tests.train_spy import spy_on_toy_training

LAYERS = 4  # L decoder layers: hidden_states holds L + 1 tensors
HIDDEN = 16


def _row(audio: int, video: int, prompt: int, response: int, width: int) -> list[int]:
    row = [Segment.BOS]
    row += [Segment.DELIMITER, *[Segment.AUDIO] * audio, Segment.DELIMITER]
    row += [Segment.DELIMITER, *[Segment.VIDEO] * video, Segment.DELIMITER]
    row += [Segment.PROMPT] * prompt + [Segment.RESPONSE] * response
    assert len(row) <= width
    return [int(s) for s in row] + [int(Segment.PAD)] * (width - len(row))


def _segments(equal: bool) -> torch.Tensor:
    if equal:  # same prefix, same response: no padding at all
        rows = [_row(5, 2, 3, 4, 19)] * 3
    else:  # prefixes and responses of different lengths, right padded
        rows = [_row(5, 2, 3, 4, 22), _row(2, 1, 3, 7, 22), _row(7, 3, 3, 1, 22)]
    return torch.tensor(rows, dtype=torch.long)


def _hidden(segments: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    b, s = segments.shape
    # A shared offset makes the cosines to BOS sizeable, like the sink states the loss targets.
    shared = torch.randn(HIDDEN, dtype=torch.float64)
    return tuple(
        (torch.randn(b, s, HIDDEN, dtype=torch.float64) + shared * (layer / LAYERS)).to(dtype)
        for layer in range(LAYERS + 1)
    )


def _reference(
    hidden: tuple[torch.Tensor, ...], segments: torch.Tensor, layers: list[int]
) -> tuple[float, int]:
    """PAPER.md section 3 with padding masked, in float64 Python arithmetic; also the denominator."""
    seg = segments.tolist()
    values, count = [], 0
    for layer in layers:
        h = hidden[layer].double().tolist()
        total, count = 0.0, 0
        for b in range(len(seg)):
            anchor = h[b][0]
            for i in range(len(seg[b])):
                if i == 0 or seg[b][i] in (Segment.PAD, Segment.RESPONSE):
                    continue
                x = h[b][i]
                dot = sum(p * q for p, q in zip(anchor, x, strict=True))
                norm = math.sqrt(sum(p * p for p in anchor)) * math.sqrt(sum(q * q for q in x))
                total += (dot / norm) ** 2
                count += 1
        values.append(total / count)
    return sum(values) / len(values), count


@pytest.mark.parametrize("equal", [True, False], ids=["equal_prefixes", "right_padded"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layers", [None, [2], [1, 3]])
def test_matches_loop_reference(equal: bool, dtype: torch.dtype, layers: list[int] | None) -> None:
    segments = _segments(equal)
    hidden = _hidden(segments, dtype)
    loss = decorrelation_loss(hidden, segments, layers)
    expected, count = _reference(hidden, segments, layers or list(range(1, LAYERS)))
    prefix_lengths = [sum(s not in (Segment.PAD, Segment.RESPONSE) for s in row) for row in segments.tolist()]
    if equal:  # the paper's normaliser B * (|T| - 1)
        assert count == len(prefix_lengths) * (prefix_lengths[0] - 1)
    else:
        assert len(set(prefix_lengths)) > 1
        assert count == sum(n - 1 for n in prefix_lengths)
    assert loss.dim() == 0
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert expected > 0.01  # not a trivially tiny value that any relative test would pass
    assert abs(loss.item() - expected) / expected < 1e-6


def test_pad_and_response_states_do_not_count() -> None:
    segments = _segments(equal=False)
    hidden = _hidden(segments)
    outside = (segments == Segment.PAD) | (segments == Segment.RESPONSE)
    assert outside.any() and (segments == Segment.PAD).any()
    changed = []
    for h in hidden:
        h = h.clone()
        h[outside] = 1e4 * torch.randn(int(outside.sum()), HIDDEN)
        changed.append(h)
    zeroed = tuple(h.masked_fill(outside[..., None], 0.0) for h in hidden)
    base = decorrelation_loss(hidden, segments)
    assert torch.equal(decorrelation_loss(tuple(changed), segments), base)
    assert torch.equal(decorrelation_loss(zeroed, segments), base)


def test_zero_prefix_state_is_safe() -> None:
    segments = _segments(equal=False)
    hidden = tuple(h.clone().requires_grad_(True) for h in _hidden(segments))
    with torch.no_grad():
        for h in hidden:
            h[0, 3] = 0.0  # an AUDIO position
    loss = decorrelation_loss(hidden, segments)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(h.grad).all() for h in hidden if h.grad is not None)


@pytest.mark.parametrize("layers", [None, [2]])
def test_gradients_reach_only_chosen_prefix_states(layers: list[int] | None) -> None:
    segments = _segments(equal=False)
    hidden = tuple(h.clone().requires_grad_(True) for h in _hidden(segments))
    decorrelation_loss(hidden, segments, layers).backward()
    chosen = set(layers or range(1, LAYERS))
    prefix = (segments != Segment.PAD) & (segments != Segment.RESPONSE)
    for index, h in enumerate(hidden):
        if index not in chosen:  # includes 0 (embeddings) and L (final norm) in every case
            assert h.grad is None or torch.count_nonzero(h.grad) == 0, index
            continue
        grad_norm = h.grad.norm(dim=-1)  # (B, S)
        assert (grad_norm[prefix] > 0).all(), index  # BOS included: it is the anchor of every cosine
        assert torch.count_nonzero(h.grad[~prefix]) == 0, index
    assert {0, LAYERS}.isdisjoint(chosen)


def test_lambda_zero_trains_on_the_cross_entropy_alone(
    tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy, _ = spy_on_toy_training(tiny_lm_dir, tmp_path / "data", tmp_path / "out", monkeypatch)
    for step in spy.steps:
        assert step["decorr"] is None, "the baseline must not compute the decorrelation loss at all"
        # Exactly, not approximately: lambda = 0 is the baseline recipe, bit for bit.
        assert torch.equal(step["loss"], step["ce"].detach())
        for got, ce in zip(step["grad_loss"], step["grad_ce"], strict=True):
            assert torch.equal(got, ce)


@pytest.mark.parametrize("decorr_lambda", [0.25, 3.0])
def test_lambda_adds_exactly_lambda_times_the_decorrelation_loss(
    tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decorr_lambda: float
) -> None:
    spy, _ = spy_on_toy_training(
        tiny_lm_dir, tmp_path / "data", tmp_path / "out", monkeypatch, decorr_lambda=decorr_lambda
    )
    for step in spy.steps:
        decorr = step["decorr"]
        # The term train adds is the loss of this very forward pass, over the default layers 1..L-1.
        recomputed = decorrelation_loss(step["out"].hidden_states, step["assembled"].segments)
        assert torch.equal(decorr.detach(), recomputed.detach())
        assert decorr.item() > 0.01  # large enough that a wrong weight shows in the sum
        # The tolerances allow float32 rounding only; a wrong weight moves the sum by >= 0.75 x 0.01.
        torch.testing.assert_close(
            step["loss"], (step["ce"] + decorr_lambda * decorr).detach(), rtol=1e-6, atol=1e-6
        )
        torch.testing.assert_close(
            step["loss"] - step["ce"].detach(), decorr_lambda * decorr.detach(), rtol=1e-4, atol=1e-6
        )
        for got, ce, dec in zip(step["grad_loss"], step["grad_ce"], step["grad_decorr"], strict=True):
            torch.testing.assert_close(got, ce + decorr_lambda * dec, rtol=1e-5, atol=1e-7)
        assert any(d.abs().max() > 0 for d in step["grad_decorr"]), "the term must reach the weights"


@pytest.mark.parametrize("layers", [[0], [LAYERS], [LAYERS + 1], [-1], [1, 0]])
def test_bad_layer_index_names_valid_range(layers: list[int]) -> None:
    segments = _segments(equal=True)
    with pytest.raises(ValueError, match=rf"valid layers are 1\.\.{LAYERS - 1}"):
        decorrelation_loss(_hidden(segments), segments, layers)


def test_other_misuse_is_rejected() -> None:
    segments = _segments(equal=True)
    hidden = _hidden(segments)
    with pytest.raises(ValueError, match="valid layers are"):
        decorrelation_loss(hidden, segments, [])
    with pytest.raises(ValueError, match="duplicates"):
        decorrelation_loss(hidden, segments, [1, 1])
    with pytest.raises(ValueError, match="at least 2 decoder layers"):
        decorrelation_loss(hidden[:2], segments)
    with pytest.raises(ValueError, match="BOS"):
        decorrelation_loss(hidden, torch.roll(segments, 1, dims=1))
    left_padded = segments.clone()
    left_padded[1] = torch.roll(segments[1], 1)  # one row of three, its BOS moved off position 0
    with pytest.raises(ValueError, match="BOS"):
        decorrelation_loss(hidden, left_padded)
    # Hidden states of one sequence would broadcast silently against three rows of segments.
    with pytest.raises(ValueError, match=r"hidden_states\[1\] has shape \(1, 19, 16\); segments \(3, 19\)"):
        decorrelation_loss(tuple(h[:1] for h in hidden), segments)


def test_non_finite_pad_and_response_states_leave_the_loss_unchanged() -> None:
    segments = _segments(equal=False)
    hidden = _hidden(segments)
    outside = (segments == Segment.PAD) | (segments == Segment.RESPONSE)
    poisoned = []
    for h in hidden:
        h = h.clone()
        h[outside] = torch.tensor([math.inf, -math.inf, math.nan] * 5 + [1.0])  # overflowed or NaN states
        poisoned.append(h)
    assert torch.equal(decorrelation_loss(poisoned, segments), decorrelation_loss(hidden, segments))


def test_rows_of_bare_bos_give_zero() -> None:
    """No prefix position but BOS (a degenerate batch): nothing to decorrelate, a zero loss, not 0 / 0."""
    segments = torch.tensor([[Segment.BOS, Segment.RESPONSE, Segment.PAD]] * 2)
    hidden = tuple(torch.randn(2, 3, HIDDEN, requires_grad=True) for _ in range(LAYERS + 1))
    loss = decorrelation_loss(hidden, segments)
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(h.grad).all() for h in hidden if h.grad is not None)
