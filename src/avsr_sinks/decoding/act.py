"""ACT, the attention-calibration baseline (PAPER.md section 4; Yu et al., ICML 2024), at inference.

ACT is an attention function registered with transformers' ``AttentionInterface`` under the name ``"act"``:
it computes Llama's eager attention and then, in the calibrated (layer, head) pairs, rescales the
post-softmax rows. Per head and per batch row, the sinks are the keys ``j`` (other than the row's first real
token) whose sink score ``alpha_j = (1/(N-j)) sum_{i>=j} A[i, j]`` (PAPER.md section 5) exceeds a threshold;
the attention to each sink is multiplied by ``beta`` and the freed mass goes to the row's other keys in
proportion to their attention. The sinks are found on the prefill pass and reused for every cached decoding
step (the project's definition of ACT for generation, PAPER.md section 4).

The state of one calibration (heads, beta, threshold, the sink sets found per layer) lives in a
:class:`Calibration`, made by the :func:`calibrate` context manager, which switches the model to ``"act"``
and back. Which heads to calibrate is found offline by :func:`search_heads`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.llama.modeling_llama import repeat_kv

from avsr_sinks.settings.spec import ActSpec

ACT = "act"

Head = tuple[int, int]  # (layer, query head)

# Which key of a head is never calibrated. The paper's text: the first token (a row's first real key).
# The released ACT code: the first key whose score passes the threshold (``indices[1:]``), which is the
# first token when that is a sink, and otherwise the first real sink after it.
EXEMPT_KEYS = ("first_token", "first_sink")


@dataclass
class Calibration:
    """What one :func:`calibrate` block applies, and the sinks it has found.

    ``sinks[layer]`` is a (batch, calibrated heads of the layer, prefill length) boolean tensor in absolute
    key positions, one row per batch row of the last prefill pass; ``first[layer]`` (batch,) holds each row's
    first real position, from which :meth:`sink_positions` counts. With ``freeze`` set, a full (uncached)
    forward applies the stored sinks instead of finding new ones: it then recomputes what cached decoding
    computes, which is how the cache path is checked.
    """

    heads: frozenset[Head]
    beta: float
    threshold: float
    num_layers: int
    exempt: str = "first_token"  # one of EXEMPT_KEYS
    freeze: bool = False
    sinks: dict[int, torch.Tensor] = field(default_factory=dict)
    first: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.exempt not in EXEMPT_KEYS:
            raise ValueError(f"act.exempt_key must be one of {EXEMPT_KEYS}, got {self.exempt!r}")
        by_layer: dict[int, list[int]] = {}
        for layer, head in sorted(self.heads):
            by_layer.setdefault(layer, []).append(head)
        self.layer_heads: dict[int, tuple[int, ...]] = {k: tuple(v) for k, v in by_layer.items()}

    def sink_positions(self) -> dict[Head, list[list[int]]]:
        """Per calibrated head, per batch row: the sink positions of the last prefill, counted from the row's
        first real token (position 0, never a sink)."""
        found: dict[Head, list[list[int]]] = {}
        for layer, sinks in self.sinks.items():
            first = self.first[layer]
            for column, head in enumerate(self.layer_heads[layer]):
                found[(layer, head)] = [
                    [int(p) - int(first[b]) for p in torch.nonzero(sinks[b, column]).flatten()]
                    for b in range(sinks.shape[0])
                ]
        return found


# Calibrations in force, keyed by the id of the config the model's attention modules share (configs are not
# hashable, and the attention function receives the module, not the model).
_ACTIVE: dict[int, Calibration] = {}


def candidate_heads(num_layers: int, num_heads: int) -> list[Head]:
    """Every (layer, head) ACT may calibrate: all heads of all layers but 0, 1 and the last."""
    return [(layer, head) for layer in range(2, num_layers - 1) for head in range(num_heads)]


def check_heads(heads: Collection[Head], num_layers: int, num_heads: int) -> frozenset[Head]:
    """The heads as a set, after refusing any outside the model or in layers 0, 1 or the last, which ACT
    never calibrates (PAPER.md section 4)."""
    heads = frozenset((int(layer), int(head)) for layer, head in heads)
    outside = sorted((lay, h) for lay, h in heads if not (0 <= lay < num_layers and 0 <= h < num_heads))
    if outside:
        raise ValueError(f"heads {outside} are outside the model ({num_layers} layers x {num_heads} heads)")
    forbidden = sorted((lay, h) for lay, h in heads if lay in (0, 1, num_layers - 1))
    if forbidden:
        raise ValueError(
            f"ACT never calibrates layers 0, 1 and the last ({num_layers - 1}); refused heads {forbidden}"
        )
    return heads


def find_sinks(
    probs: torch.Tensor, allowed: torch.Tensor, threshold: float, exempt: str = "first_token"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sinks of a prefill pass.

    ``probs`` (B, H, N, N) post-softmax attention, ``allowed`` (B, N, N) which query may see which key (the
    causal and padding mask). Only real tokens count, queries as well as keys; a position is real when some
    query may see it, so left and right padding are handled alike. The score of a key is the mean attention
    it receives from the real queries that may see it, which for causal attention is the formula's
    ``1/(N-j)`` with ``j`` counted from the row's first real token. ``exempt`` (EXEMPT_KEYS) says which key
    is never a sink: the row's first real token, or the first key above the threshold. Returns the
    (B, H, N) sink mask and the (B,) first real position of each row.
    """
    real = allowed.any(dim=1)  # (B, N): keys anyone may see = the row's real tokens
    seen = allowed & real[:, :, None]  # padded query rows (right padding) see keys but are not counted
    viewers = seen.sum(dim=1)  # (B, N)
    received = (probs * seen[:, None]).sum(dim=2)  # (B, H, N)
    alpha = received / viewers.clamp(min=1)[:, None]
    positions = torch.arange(real.shape[1], device=real.device)
    first = torch.where(real, positions, real.shape[1]).min(dim=1).values  # (B,)
    eligible = real & (viewers > 0)
    if exempt == "first_token":
        return (alpha > threshold) & (eligible & (positions != first[:, None]))[:, None], first
    passing = (alpha > threshold) & eligible[:, None]  # (B, H, N)
    first_passing = passing & (passing.cumsum(dim=-1) == 1)
    return passing & ~first_passing, first


def calibrate_rows(probs: torch.Tensor, sinks: torch.Tensor, rows: torch.Tensor, beta: float) -> torch.Tensor:
    """ACT's rescaling of attention rows.

    ``probs`` (B, H, Q, K), ``sinks`` (B, H, K) boolean, ``rows`` (B, Q) the rows to calibrate. The attention
    to each sink is multiplied by ``beta`` and the freed mass is shared among the other keys of the row in
    proportion to their attention, so rows keep summing to 1 and keys at zero (masked: future or padding)
    stay at zero. A row whose whole mass sits on sinks has nowhere to put it and is left as it was.
    """
    is_sink = sinks[:, :, None, :]
    sink_mass = torch.where(is_sink, probs, 0.0).sum(dim=-1, keepdim=True)
    rest = torch.where(is_sink, 0.0, probs).sum(dim=-1, keepdim=True)
    gain = 1.0 + (1.0 - beta) * sink_mass / torch.where(rest > 0, rest, 1.0)
    calibrated = torch.where(is_sink, probs * beta, probs * gain)
    apply = rows[:, None, :, None] & (rest > 0)
    return torch.where(apply, calibrated, probs)


def _allowed(attention_mask: torch.Tensor | None, batch: int, q_len: int, k_len: int, device) -> torch.Tensor:
    """(B, Q, K) boolean: which query may see which key, read off the additive mask eager attention adds."""
    if attention_mask is None:
        # No mask: every key is real and causality is by position, the queries being the last Q positions.
        causal = torch.arange(k_len, device=device)[None, :] <= torch.arange(q_len, device=device)[
            :, None
        ] + (k_len - q_len)
        return causal.expand(batch, q_len, k_len)
    mask = attention_mask[:, 0, :, :k_len]
    # Blocked entries hold the dtype's minimum; half of it separates them from any real bias.
    return (mask > torch.finfo(mask.dtype).min / 2).expand(batch, q_len, k_len)


def _stored_sinks(state: Calibration, layer: int, batch: int, k_len: int) -> torch.Tensor:
    """The layer's prefill sinks, widened with non-sinks to ``k_len`` keys (the tokens decoded since)."""
    sinks = state.sinks.get(layer)
    if sinks is None:
        raise RuntimeError(
            f"ACT: layer {layer} has no sink sets; a decoding step (or a frozen forward) needs a prefill "
            "pass under the same calibrate() block first"
        )
    if sinks.shape[0] != batch or sinks.shape[2] > k_len:
        raise RuntimeError(
            f"ACT: the sink sets of layer {layer} come from a prefill of batch {sinks.shape[0]} and "
            f"{sinks.shape[2]} keys, not from this pass (batch {batch}, {k_len} keys)"
        )
    return nn.functional.pad(sinks, (0, k_len - sinks.shape[2]), value=False)


def act_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Llama's eager attention, with ACT applied to the calibrated heads of ``module.layer_idx``.

    A pass with as many queries as keys (nothing cached) is a prefill: its sinks are found here, per batch
    row and calibrated head, and stored in the :class:`Calibration` (unless it is frozen, when the stored
    ones are applied). A pass with one query and cached keys is a decoding step and applies the stored
    sinks, which sit at the same absolute cache positions. Layers without calibrated heads compute exactly
    what eager attention computes.
    """
    state = _ACTIVE.get(id(module.config))
    if state is None:
        raise RuntimeError(
            'attention implementation "act" is only usable inside avsr_sinks.decoding.act.calibrate()'
        )
    layer = module.layer_idx
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)

    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    probs = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)

    batch, _, q_len, k_len = probs.shape
    prefill = q_len == k_len
    if not prefill and q_len != 1:
        raise ValueError(
            f"ACT handles a prefill (queries = keys, no cache before it) or one-token decoding steps; got "
            f"{q_len} queries over {k_len} keys (chunked prefill, a static cache or a continued prompt)"
        )
    if prefill and layer == 0 and not state.freeze:
        # Layer 0 runs first in every forward: a new prefill starts here, so last run's sinks go.
        state.sinks.clear()
        state.first.clear()

    heads = state.layer_heads.get(layer)
    if heads:
        allowed = _allowed(attention_mask, batch, q_len, k_len, probs.device)
        index = torch.tensor(heads, device=probs.device)
        selected = probs.index_select(1, index)
        if prefill:
            rows = allowed.any(dim=1)  # (B, N): the real tokens are the real queries too
            if state.freeze:
                sinks = _stored_sinks(state, layer, batch, k_len)
            else:
                sinks, first = find_sinks(selected, allowed, state.threshold, state.exempt)
                state.sinks[layer], state.first[layer] = sinks, first
        else:
            # Beam search repeats each sample num_beams times before the prefill, and its reordering of the
            # cache only permutes beams of one sample, whose prompts (and so prefill sinks) are identical:
            # the row-wise sink sets stay valid without being reordered with the cache.
            rows = allowed.any(dim=2)  # (B, 1)
            sinks = _stored_sinks(state, layer, batch, k_len)
        # Out of place: softmax's backward needs its own output unchanged.
        probs = probs.index_copy(1, index, calibrate_rows(selected, sinks, rows, state.beta))

    attn_weights = probs.to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


AttentionInterface.register(ACT, act_attention_forward)
# Masks are built per implementation name, and a name without a mask function gets no mask at all (no
# causality, no padding): "act" adds its mask as eager attention does, so it takes eager's.
AttentionMaskInterface.register(ACT, eager_mask)


def _base_model(model: Any) -> PreTrainedModel:
    """The transformers model inside an AVSRModel (``.llm``) or a PEFT wrapper."""
    if not isinstance(model, PreTrainedModel) and hasattr(model, "llm"):
        model = model.llm
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"calibrate() needs a transformers model, got {type(model).__name__}")
    return model


@contextmanager
def calibrate(
    model: Any,
    heads: Collection[Head],
    beta: float = 0.4,
    threshold: float = 0.1,
    exempt: str = "first_token",
) -> Iterator[Calibration]:
    """Run ``model`` (a causal LM, its PEFT wrapper or an AVSRModel) with ACT on ``heads`` inside the block.

    Switches the attention implementation to ``"act"`` and restores the previous one on exit. With no heads
    the outputs equal eager attention's exactly. Each prefill replaces the sink sets of the last one, so one
    block may run many forwards and generations; decoding steps reuse the sinks of their prefill.
    """
    llm = _base_model(model)
    config = llm.config
    calibration = Calibration(
        heads=check_heads(heads, config.num_hidden_layers, config.num_attention_heads),
        beta=float(beta),
        threshold=float(threshold),
        num_layers=config.num_hidden_layers,
        exempt=exempt,
    )
    if not 0.0 <= calibration.beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    if id(config) in _ACTIVE:
        raise RuntimeError("this model is already inside a calibrate() block")
    previous = config._attn_implementation
    llm.set_attn_implementation(ACT)
    if config._attn_implementation != ACT:
        # set_attn_implementation only warns when a model class does not dispatch through the interface.
        llm.set_attn_implementation(previous)
        raise RuntimeError(f"{type(llm).__name__} cannot switch its attention implementation to {ACT!r}")
    _ACTIVE[id(config)] = calibration
    try:
        yield calibration
    finally:
        del _ACTIVE[id(config)]
        llm.set_attn_implementation(previous)


def calibrate_as_set(model: Any, heads: Collection[Head], act: ActSpec):
    """:func:`calibrate` under a run's ACT settings (beta, sink threshold, exempt key)."""
    return calibrate(model, heads, act.beta, act.sink_threshold, act.exempt_key)


def search_heads(score: Callable[[frozenset[Head]], float], candidates: Sequence[Head]) -> dict[str, Any]:
    """ACT's offline head search (PAPER.md section 4): one head at a time, keep those that help.

    ``score(heads)`` evaluates the model calibrated on ``heads``, lower being better (e.g. teacher-forced
    cross-entropy on a calibration set). Scores the empty set (the baseline), each candidate alone, keeps
    the candidates that beat the baseline, and scores the kept set together (it need not beat its members:
    the search is greedy, as in ACT). Returns a JSON-ready record of every score.
    """
    candidates = [(int(layer), int(head)) for layer, head in candidates]
    if len(set(candidates)) != len(candidates):
        raise ValueError("search_heads: the candidate heads repeat")
    baseline = float(score(frozenset()))
    scores = {head: float(score(frozenset({head}))) for head in candidates}
    kept = [head for head in candidates if scores[head] < baseline]
    # The empty kept set is the baseline; no need to score it twice.
    kept_score = float(score(frozenset(kept))) if kept else baseline
    return {
        "baseline_score": baseline,
        "candidates": [
            {"layer": layer, "head": head, "score": scores[(layer, head)], "improves": (layer, head) in kept}
            for layer, head in candidates
        ],
        "kept_heads": [[layer, head] for layer, head in kept],
        "kept_score": kept_score,
    }
