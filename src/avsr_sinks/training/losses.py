"""The decorrelation loss (PAPER.md section 3): push every prefix token's hidden state towards being
orthogonal to the BOS hidden state, which removes intermediate attention sinks and massive activations.

For a batch of B sequences, T the prefix positions (BOS, modality delimiters and features, prompt; not the
transcript) and h^l the output hidden state of decoder layer l, PAPER.md section 3 defines

    mean_{l=1..L-1} [ sum_b sum_{i in T, i != 0} cos^2(h^l_{b,0}, h^l_{b,i}) / (B * (|T| - 1)) ]

(times lambda, which the caller applies). The cosine is squared: the loss pushes towards orthogonal, not
towards negative. The embedding output and the final, normed output are skipped.

Unlike the authors' code, padded prefix positions are masked here: only positions that are neither PAD
nor RESPONSE count, and the denominator is ``sum_b (|T_b| - 1)``, which equals ``B * (|T| - 1)`` when all
prefixes have the same length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from avsr_sinks.modeling.segments import Segment

# Hidden states of a zero vector (or an underflowed bf16 one) must give a cosine of 0, not NaN.
_NORM_EPS = 1e-12


def decorrelation_layers(num_hidden_states: int, layers: Sequence[int] | None) -> list[int]:
    """Indices into ``hidden_states`` the loss averages over: ``layers`` checked, or all of 1..L-1."""
    last = num_hidden_states - 2  # L - 1, with hidden_states holding L + 1 tensors
    if last < 1:
        raise ValueError(
            f"the decorrelation loss needs a model of at least 2 decoder layers (layers 1..L-1); got "
            f"{num_hidden_states} hidden states, i.e. L = {num_hidden_states - 1}"
        )
    if layers is None:
        return list(range(1, last + 1))
    chosen = [int(layer) for layer in layers]
    if not chosen:
        raise ValueError(f"no layers given for the decorrelation loss; valid layers are 1..{last}")
    bad = [layer for layer in chosen if not 1 <= layer <= last]
    if bad:
        raise ValueError(
            f"decorrelation layers {bad} out of range: valid layers are 1..{last} (L = {last + 1}; 0 is the "
            f"embedding output and {last + 1} the final normed output)"
        )
    if len(set(chosen)) != len(chosen):
        # A repeated layer would silently weigh it more in the mean.
        raise ValueError(f"decorrelation layers {chosen} contain duplicates")
    return chosen


def decorrelation_loss(
    hidden_states: Sequence[torch.Tensor],
    segments: torch.Tensor,
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """Unscaled decorrelation loss: the mean over ``layers`` (None: 1..L-1) of
    ``sum_b sum_{i in T_b, i != 0} cos^2(h_{b,0}, h_{b,i}) / sum_b (|T_b| - 1)``.

    ``hidden_states`` is what transformers returns with ``output_hidden_states=True`` (L + 1 tensors of
    (B, S, H)); ``segments`` the (B, S) Segment values of the right-padded batch, BOS at position 0.
    The result is a float32 scalar (float64 if the hidden states are float64).
    """
    indices = decorrelation_layers(len(hidden_states), layers)
    if segments.dim() != 2:
        raise ValueError(f"segments must be (B, S); got shape {tuple(segments.shape)}")
    if not bool((segments[:, 0] == Segment.BOS).all()):
        # Left padding (generation) would make position 0 a PAD, and the anchor would be wrong.
        raise ValueError("every row must start with BOS (right padding); position 0 is not BOS")

    in_prefix = (segments != Segment.PAD) & (segments != Segment.RESPONSE)
    in_prefix[:, 0] = False  # i != 0: BOS against itself is always 1
    # Clamp so a batch of bare BOS rows gives 0, not 0/0.
    count = in_prefix.sum().clamp(min=1)

    per_layer = []
    for index in indices:
        h = hidden_states[index]
        if h.shape[:2] != segments.shape:
            raise ValueError(
                f"hidden_states[{index}] has shape {tuple(h.shape)}; segments {tuple(segments.shape)}"
            )
        # bf16 cosines of near-parallel vectors are too coarse for a loss weighted by 1e4.
        h = h.to(torch.promote_types(h.dtype, torch.float32))
        unit = F.normalize(h, dim=-1, eps=_NORM_EPS)
        cos = (unit * unit[:, :1]).sum(dim=-1)  # (B, S)
        # where, not a multiply by the mask: a non-finite PAD/RESPONSE state must not turn the value into
        # NaN (0 * inf), and finite ones get an exactly zero gradient.
        sq = torch.where(in_prefix, cos.square(), torch.zeros_like(cos))
        per_layer.append(sq.sum() / count)
    return torch.stack(per_layer).mean()
