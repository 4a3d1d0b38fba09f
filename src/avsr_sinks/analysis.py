"""Attention sinks and massive activations (PAPER.md section 5), measured on any causal LM.

Sink score of key j in one head (Gu et al., ICLR 2025): ``alpha_j = mean_{i >= j} A[i, j]``, the mean
attention key j receives from the queries that can see it. Massive activations (Sun et al., 2024): the
largest magnitudes of a layer's output hidden state against the median magnitude of that whole output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from avsr_sinks.lm import sentence_batch


def sink_scores(attention: torch.Tensor, length: int) -> torch.Tensor:
    """(heads, N, N) post-softmax causal attention of one sequence, first ``length`` positions real ->
    (heads, length) sink scores."""
    a = attention[:, :length, :length]
    receivers = torch.arange(length, 0, -1, dtype=a.dtype, device=a.device)  # queries i >= j: N - j
    return a.sum(dim=1) / receivers


@torch.inference_mode()
def lm_phenomena(model, tokenizer, sentences: Sequence[str], sink_threshold: float = 0.3) -> dict[str, Any]:
    """Per layer: the share of heads in which BOS is a sink (mean over sentences of ``BOS s EOS``), and
    the top-1 magnitude of the layer output over its median magnitude (max over sentences). The last
    layer's output is taken after the final norm, as transformers returns it."""
    model.eval()
    batch = sentence_batch(tokenizer, list(sentences))
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_attentions=True,
        output_hidden_states=True,
    )
    lengths = batch["attention_mask"].sum(1).tolist()
    layers = []
    for index, attention in enumerate(out.attentions):  # (B, heads, N, N)
        bos = torch.stack([sink_scores(attention[b], n)[:, 0] for b, n in enumerate(lengths)])  # (B, heads)
        hidden = out.hidden_states[index + 1]  # the layer's output, (B, N, H)
        ratios, tops = [], []
        for b, n in enumerate(lengths):
            magnitude = hidden[b, :n].abs()
            top = magnitude.max()
            ratios.append(float(top / magnitude.median()))
            tops.append(float(top))
        layers.append(
            {
                "layer": index,
                "bos_sink_head_share": float((bos > sink_threshold).float().mean()),
                "bos_sink_score_mean": float(bos.mean()),
                "top1_over_median": max(ratios),
                "top1": max(tops),
            }
        )
    return {"sink_threshold": sink_threshold, "sentences": len(sentences), "layers": layers}
