"""Sink scores and the LM phenomena report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsr_sinks.analysis import lm_phenomena, sentence_batch, sink_scores
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


def test_lm_phenomena_reads_raw_layer_outputs_and_the_bos_sink_formula(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    sentences = ["the cat sat", "a dog runs in the park"]
    layers = llm.get_decoder().layers

    def plant(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, 0, 3] = 5e4  # BOS, feature 3 of the last layer: the final norm would hide it
        return output

    handle = layers[-1].register_forward_hook(plant)
    try:
        report = lm_phenomena(llm, tok, sentences, sink_threshold=0.3)
    finally:
        handle.remove()
    assert [x["layer"] for x in report["layers"]] == list(range(llm.config.num_hidden_layers))
    assert report["layers"][-1]["top1"] == pytest.approx(5e4)
    assert report["layers"][-1]["top1_over_median"] > 1000
    assert report["layers"][0]["top1"] < 1e3

    # BOS's sink score is its mean attention over every real query (all of them see position 0).
    batch = sentence_batch(tok, sentences)
    with torch.no_grad():
        attentions = llm(
            **{k: batch[k] for k in ("input_ids", "attention_mask")}, output_attentions=True
        ).attentions
    lengths = batch["attention_mask"].sum(1).tolist()
    for layer, attention in zip(report["layers"], attentions, strict=True):
        alpha = torch.stack([attention[b, :, :n, 0].mean(-1) for b, n in enumerate(lengths)])  # (B, heads)
        assert layer["bos_sink_score_mean"] == pytest.approx(float(alpha.mean()), rel=1e-5)
        assert layer["bos_sink_head_share"] == pytest.approx(float((alpha > 0.3).float().mean()))
