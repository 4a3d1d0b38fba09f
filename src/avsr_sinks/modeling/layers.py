"""The trained parts between a frozen encoder and the LLM: temporal compression, the projector, and the
CTC head that scores projected tokens against the LLM's input embeddings."""

from __future__ import annotations

import torch
from torch import nn


class Compressor(nn.Module):
    """Per-sample temporal compression by ``rate``: average pooling or frame stacking.

    Each sample is pooled over its own valid frames, so padding never leaks into the last window and a
    batched forward equals one-at-a-time forwards. A final partial window is kept (pooled over the frames
    it has; stacked after zero-padding), so even a clip shorter than ``rate`` frames yields one token.
    """

    def __init__(self, mode: str, rate: int) -> None:
        super().__init__()
        self.mode, self.rate = mode, rate

    def output_width(self, input_width: int) -> int:
        return input_width * self.rate if self.mode == "stack" else input_width

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (ceil(T / rate), D) for avgpool, (ceil(T / rate), D * rate) for stack."""
        if self.rate == 1:
            return frames
        if self.mode == "avgpool":
            pooled = nn.functional.avg_pool1d(
                frames.T.unsqueeze(0), self.rate, self.rate, ceil_mode=True
            )  # (1, D, T')
            return pooled.squeeze(0).T  # (T', D)
        pad = (-frames.shape[0]) % self.rate
        frames = nn.functional.pad(frames, (0, 0, 0, pad))  # (T + pad, D)
        return frames.reshape(-1, self.rate * frames.shape[1])  # (T', D * rate)


class Projector(nn.Sequential):
    """Linear -> ReLU -> Linear, then LayerNorm when asked (the sink paper turns it on)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, layernorm: bool) -> None:
        layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out)]
        if layernorm:
            layers.append(nn.LayerNorm(d_out))
        super().__init__(*layers)


class TiedCTCHead(nn.Module):
    """CTC scores of a projected token against the frozen LLM input embeddings (plus a learned blank).

    Scoring against the embedding table pulls each projected token toward the embedding of the word
    piece it carries, the form in which the frozen LLM already knows how to read (and copy) text; a head
    of its own reaches a low CTC loss too, but in a space the LLM cannot read, and at the embedded scale
    the cross-entropy alone never finds the way there. Learned: one temperature and the blank's scorer.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))
        self.blank = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor, embeddings: torch.Tensor, blank_row: int) -> torch.Tensor:
        """(T, H) tokens, (C, H) rows of the embedding table -> (T, C) logits; row ``blank_row`` is the
        blank's, scored by the learned blank scorer instead."""
        logits = self.scale * tokens @ embeddings.T
        blank = self.blank(tokens)[:, 0]  # (T,)
        column = torch.arange(logits.shape[1], device=logits.device) == blank_row
        return torch.where(column, blank[:, None], logits)
