"""Sink scores and the LM phenomena report."""

from __future__ import annotations

from pathlib import Path

import torch

from avsr_sinks.analysis import lm_phenomena, sink_scores
from avsr_sinks.model import load_llm


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


def test_lm_phenomena_reports_every_layer(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    report = lm_phenomena(llm, tok, ["the cat sat", "a dog runs in the park"])
    assert len(report["layers"]) == llm.config.num_hidden_layers
    for layer in report["layers"]:
        assert 0 <= layer["bos_sink_head_share"] <= 1 and layer["top1_over_median"] >= 1
