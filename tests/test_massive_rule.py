"""The massive-activation rule of PAPER.md section 5, one half at a time: an entry of a layer's output is
massive only if |h| > massive_abs (100) and |h| >= massive_ratio (1000) x the median |h| of that layer.

Each layer of the hand-built batch is a constant magnitude (so its median is exactly that value) with one
spike, placed to pass one bound, the other, both, or to sit exactly on a bound.
"""

from __future__ import annotations

import pytest
import torch

from avsr_sinks.analysis.metrics import analyze_batch
from avsr_sinks.analysis.thresholds import AnalysisThresholds
from avsr_sinks.modeling.segments import Segment

SEGMENTS = [Segment.BOS, Segment.AUDIO, Segment.AUDIO, Segment.AUDIO, Segment.PROMPT, Segment.RESPONSE]
N, HEADS, H = len(SEGMENTS), 2, 8
SPIKE_TOKEN, SPIKE_FEATURE = 2, 5


def _batch(layers: list[tuple[float, float]], mlp: list[tuple[float, float]] | None = None) -> dict:
    """One utterance; layer l's output is ``base`` everywhere but ``spike`` at (SPIKE_TOKEN,
    SPIKE_FEATURE), for each (base, spike) in ``layers``; the MLP outputs likewise from ``mlp``
    (default: all ones, never massive). Powers of two keep base x ratio exact in float32."""

    def output(base: float, spike: float) -> torch.Tensor:
        # Alternating signs: the rule reads |h|, so a negative spike counts like a positive one.
        h = base * torch.tensor([1.0, -1.0]).repeat(N * H // 2).reshape(1, N, H)
        h[0, SPIKE_TOKEN, SPIKE_FEATURE] = -spike
        return h

    causal = torch.ones(N, N).tril()
    attention = (causal / causal.sum(1, keepdim=True)).expand(1, HEADS, N, N)  # no token is a sink
    mlp = mlp or [(1.0, 1.0)] * len(layers)
    return {
        "attentions": [attention.clone() for _ in layers],
        "hidden_states": [output(1.0, 1.0), *(output(b, s) for b, s in layers)],  # [0]: embeddings
        "mlp_outputs": [output(b, s) for b, s in mlp],
        "segments": torch.tensor([SEGMENTS]),
        "attention_mask": torch.ones(1, N, dtype=torch.long),
    }


def _counts(metrics: dict) -> list[int]:
    return [layer["massive"]["count"] for layer in metrics["layers"]]


def test_each_bound_alone_is_not_enough_and_both_together_are() -> None:
    layers = [
        (1.0, 512.0),  # |h| > 100, but only 512 x the median
        (2.0**-7, 64.0),  # 8192 x the median, but |h| <= 100
        (2.0**-4, 128.0),  # both: |h| > 100 and 2048 x the median
    ]
    metrics, arrays = analyze_batch(**_batch(layers))
    assert _counts(metrics) == [0, 0, 1]
    assert [layer["massive"]["median"] for layer in metrics["layers"]] == [base for base, _ in layers]
    assert arrays["median"].tolist() == [base for base, _ in layers]
    assert metrics["massive_features"] == [SPIKE_FEATURE]
    (token,) = metrics["layers"][2]["massive"]["tokens"]
    assert (token["position"], token["segment"], token["features"]) == (SPIKE_TOKEN, "audio", [SPIKE_FEATURE])
    assert token["max_abs"] == 128.0
    assert metrics["layers"][2]["massive"]["features"] == [{"feature": SPIKE_FEATURE, "entries": 1}]
    assert [layer["massive"]["utterances_with"] for layer in metrics["layers"]] == [0, 0, 1]


def test_the_ratio_bound_is_inclusive_and_the_absolute_bound_strict() -> None:
    layers = [
        (2.0**-3, 125.0),  # exactly 1000 x the median, and > 100: massive (>=)
        (2.0**-4, 100.0),  # 1600 x the median, but exactly 100: not massive (>)
        (2.0**-3, 124.9),  # just under 1000 x the median: not massive
    ]
    metrics, _ = analyze_batch(**_batch(layers))
    assert _counts(metrics) == [1, 0, 0]


def test_the_configured_thresholds_are_the_ones_applied() -> None:
    layers = [(1.0, 50.0), (1.0, 5.0), (2.0**-2, 20.0)]
    metrics, _ = analyze_batch(
        **_batch(layers), thresholds=AnalysisThresholds(massive_abs=10.0, massive_ratio=40.0)
    )
    # 50: > 10 and 50 x median; 5: <= 10; 20: > 10 and 80 x median.
    assert _counts(metrics) == [1, 0, 1]
    assert metrics["thresholds"]["massive_abs"] == 10.0 and metrics["thresholds"]["massive_ratio"] == 40.0
    # The defaults would find none of them.
    assert _counts(analyze_batch(**_batch(layers))[0]) == [0, 0, 0]


@pytest.mark.parametrize(
    ("mlp_spike", "found"),
    [
        ((2.0**-4, 128.0), [SPIKE_FEATURE]),  # both bounds: the MLP writes the massive feature
        ((1.0, 512.0), []),  # |h| > 100 only
        ((2.0**-7, 64.0), []),  # ratio only
    ],
    ids=["both", "absolute-only", "ratio-only"],
)
def test_mlp_outputs_meet_the_same_two_bounds(mlp_spike: tuple[float, float], found: list[int]) -> None:
    layers = [(2.0**-4, 128.0), (2.0**-4, 128.0)]  # the feature is massive in the hidden states
    metrics, _ = analyze_batch(**_batch(layers, mlp=[(1.0, 1.0), mlp_spike]))
    assert [layer["mlp_massive_features"] for layer in metrics["layers"]] == [[], found]
    assert metrics["first_mlp_layer"] == (1 if found else None)
