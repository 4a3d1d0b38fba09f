"""Sink scores."""

from __future__ import annotations

import torch

from avsr_sinks.analysis.metrics import sink_scores


def test_sink_score_is_the_mean_attention_from_the_queries_that_see_the_key() -> None:
    # One head, 3 real positions + 1 padding: every query puts half its attention on position 0.
    a = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.5, 0.5, 0.0, 0.0],
            [0.5, 0.25, 0.25, 0.0],
            [0.9, 0.1, 0.0, 0.0],  # padding row: ignored
        ]
    )[None]
    scores = sink_scores(a, length=3)
    torch.testing.assert_close(scores, torch.tensor([[(1 + 0.5 + 0.5) / 3, (0.5 + 0.25) / 2, 0.25]]))
