"""Attention sinks and massive activations (PAPER.md section 5), measured on any causal LM.

Sink score of key j in one head (Gu et al., ICLR 2025): ``alpha_j = mean_{i >= j} A[i, j]``, the mean
attention key j receives from the queries that can see it. Massive activations (Sun et al., 2024): the
largest magnitudes of a layer's output hidden state against the median magnitude of that whole output.

``collect`` runs an AVSRModel teacher-forced and captures what ``analyze_batch`` needs; ``analyze_batch``
turns plain tensors into the metrics (JSON) and the arrays behind the figures (npz), which
``write_analysis`` writes as ``results/analysis/<exp>/{metrics.json,arrays.npz}``. Layer ``l`` means
decoder layer ``l`` (0-based): its attention ``attentions[l]``, its MLP output ``mlp_outputs[l]`` and its
own output ``hidden_states[l + 1]``, the last layer's taken before the model's final norm (which would hide
its massive activations; see avsr_sinks.modeling.layer_outputs).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from avsr_sinks.analysis.thresholds import AnalysisThresholds
from avsr_sinks.modeling.segments import Segment


def sink_scores(attention: torch.Tensor, length: int) -> torch.Tensor:
    """(heads, N, N) post-softmax causal attention of one sequence, first ``length`` positions real ->
    (heads, length) sink scores."""
    a = attention[:, :length, :length]
    receivers = torch.arange(length, 0, -1, dtype=a.dtype, device=a.device)  # queries i >= j: N - j
    return a.sum(dim=1) / receivers


# ----- the AVSR analysis ------------------------------------------------------------------------------


# Per-layer metrics that are also saved as (L,) arrays for the figures.
CURVES = ("bos_sink_share", "intermediate_sink_count", "cosine_bos_sink", "cosine_bos_nonsink")

# The parts of the input that intermediate sinks are counted by: the modality blocks (delimiters and
# feature tokens, the segment the paper's claims are about), the prompt, and the response.
SEGMENT_GROUPS = {
    "modality": (Segment.DELIMITER, Segment.AUDIO, Segment.VIDEO),
    "prompt": (Segment.PROMPT,),
    "response": (Segment.RESPONSE,),
}


def segment_name(value: int) -> str:
    """'bos', 'delimiter', 'audio', 'video', 'prompt', 'response' or 'pad'."""
    return Segment(int(value)).name.lower()


def _check_inputs(attentions, hidden_states, mlp_outputs, segments, attention_mask, token_labels) -> None:
    n_layers, (batch, width) = len(attentions), tuple(segments.shape)
    if n_layers == 0 or len(hidden_states) != n_layers + 1 or len(mlp_outputs) != n_layers:
        raise ValueError(
            f"need L attention maps, L + 1 hidden states and L MLP outputs; got {n_layers}, "
            f"{len(hidden_states)} and {len(mlp_outputs)}"
        )
    hidden = hidden_states[0].shape[-1]
    for name, tensors, shape in (
        ("attentions", attentions, (batch, attentions[0].shape[1], width, width)),
        ("hidden_states", hidden_states, (batch, width, hidden)),
        ("mlp_outputs", mlp_outputs, (batch, width, hidden)),
    ):
        bad = [i for i, t in enumerate(tensors) if tuple(t.shape) != shape]
        if bad:
            raise ValueError(f"{name}[{bad[0]}] has shape {tuple(tensors[bad[0]].shape)}, expected {shape}")
    if tuple(attention_mask.shape) != (batch, width):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, width)}")
    if token_labels is not None and [len(row) for row in token_labels] != [width] * batch:
        raise ValueError(f"token_labels must hold {batch} rows of {width} labels, one per position")


def analyze_batch(
    attentions: Sequence[torch.Tensor],
    hidden_states: Sequence[torch.Tensor],
    mlp_outputs: Sequence[torch.Tensor],
    segments: torch.Tensor,
    attention_mask: torch.Tensor,
    thresholds: AnalysisThresholds = AnalysisThresholds(),
    token_labels: Sequence[Sequence[str]] | None = None,
    utterance: int = 0,
    attention_layer: int | None = None,
    hidden_layer: int | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Sinks, massive activations and BOS cosine per layer of one batch (PAPER.md section 5).

    Every row is reduced to its real tokens (``attention_mask`` 1; left or right padding alike), whose
    first must be BOS; positions in the output count real tokens, so BOS is position 0. Statistics are
    computed in float32. Per layer ``l``:

    - ``bos_sink_share``: the share of heads with alpha_BOS > eps, averaged over utterances;
      ``bos_sink_score_mean``: alpha_BOS averaged over heads and utterances.
    - ``massive_token_sink_share`` / ``..._score_mean``: the same for BOS and every token with a massive
      entry in some layer, their sink scores summed (a trained model can spread the sink over them).
    - ``intermediate_sink_count``: tokens j > 0 that are a sink in at least one head, per utterance
      (mean over utterances); ``intermediate_sinks`` lists each (utterance, position, segment, token,
      heads, max score); ``..._by_segment`` / ``..._by_token`` count them over the batch. A position
      seen by fewer than ``thresholds.min_queries`` real queries is never a sink.
    - ``by_group``: per SEGMENT_GROUPS group, the intermediate sinks per utterance there and the mean
      cosine with BOS of its sink and its other tokens (None where there are none).
    - ``massive``: top-1/2/3 |h| of the layer output, the median |h| over all real tokens x features,
      and top-1/median, all from the utterance with the largest top-1 (recorded); ``count`` and
      ``features`` / ``tokens`` pool the massive entries (both thresholds) of every utterance;
      ``count_non_bos`` counts those at tokens other than BOS.
    - ``mlp_massive_features``: the massive features (found in any layer's output) at which this layer's
      MLP output passes the same test against its own median; ``first_mlp_layer`` is the first such layer.
    - ``cosine_bos_sink`` / ``cosine_bos_nonsink``: cosine between a token's layer output and BOS's,
      averaged over the tokens j > 0 of every utterance that are / are not a sink in some head of this
      layer (None when there are none), with their counts.

    The arrays (float32 maps, int64 indices) are for utterance ``utterance`` (real tokens only, n of
    them): ``attention`` (n, n) the head mean of ``attention_layer`` (default: of the layers where BOS is
    a sink in at least half the heads, the one with the most intermediate sinks; without such a layer the
    layer with the most intermediate sinks, else ``hidden_layer``), ``segments`` (n,), ``token_labels``
    (n,) str, ``sink_scores`` (L, heads, n), ``hidden_abs`` (n, H) |output| of ``hidden_layer`` (default:
    its layer with the largest top-1/median), ``cosine_bos`` (L, n); ``sink_token`` (its position with the
    most (layer, head) sink hits, -1 if none) and ``nonsink_token`` (the first never-sink token, feature
    tokens first, -1 if none). Batch curves: ``topk`` (L, 3), ``median``, ``top1_over_median``,
    ``bos_sink_share``, ``intermediate_sink_count``, ``cosine_bos_sink``, ``cosine_bos_nonsink`` (L,; NaN
    where no token), and ``thresholds`` (sink, massive_abs, massive_ratio).
    """
    _check_inputs(attentions, hidden_states, mlp_outputs, segments, attention_mask, token_labels)
    n_layers, batch = len(attentions), segments.shape[0]
    if not 0 <= utterance < batch:
        raise ValueError(f"figure utterance {utterance} is outside the batch of {batch}")
    for name, layer in (("attention_layer", attention_layer), ("hidden_layer", hidden_layer)):
        if layer is not None and not 0 <= layer < n_layers:
            raise ValueError(f"{name} {layer} is outside the model's {n_layers} layers")
    per_utt = [
        _one_utterance(b, attentions, hidden_states, mlp_outputs, attention_mask, thresholds)
        for b in range(batch)
    ]
    segs, labels = _real_rows([u["index"] for u in per_utt], segments, token_labels)
    where = _Locator(segs, labels)
    massive_features = sorted({f for u in per_utt for f in u["massive"].nonzero()[:, 2].tolist()})
    groups = {
        name: [torch.isin(torch.tensor(row), torch.tensor([int(k) for k in kinds])) for row in segs]
        for name, kinds in SEGMENT_GROUPS.items()
    }  # name -> per utterance (n,) bool
    layers = [_layer_record(layer, per_utt, groups, where, massive_features) for layer in range(n_layers)]
    figure = _figure_choice(per_utt[utterance], segs[utterance], utterance, attention_layer, hidden_layer)
    metrics = {
        "thresholds": asdict(thresholds),
        "utterances": batch,
        "num_layers": n_layers,
        "num_heads": int(attentions[0].shape[1]),
        "massive_features": massive_features,
        "first_mlp_layer": next((x["layer"] for x in layers if x["mlp_massive_features"]), None),
        "figure": figure,
        "layers": layers,
    }
    arrays = _arrays(per_utt[utterance], segs[utterance], labels[utterance], layers, figure, thresholds)
    return metrics, arrays


def _real_rows(
    indices: list[torch.Tensor], segments: torch.Tensor, token_labels: Sequence[Sequence[str]] | None
) -> tuple[list[list[int]], list[list[str]]]:
    """Each row's segments and token labels ("" without labels) at its real tokens (``indices``), the
    first of them BOS."""
    segs = [segments[b, index].tolist() for b, index in enumerate(indices)]
    if any(row[0] != Segment.BOS for row in segs):
        raise ValueError("the first real token of every row must be BOS (Segment.BOS)")
    labels = [
        [str(token_labels[b][i]) for i in index.tolist()] if token_labels else [""] * len(segs[b])
        for b, index in enumerate(indices)
    ]
    return segs, labels


def _arrays(
    u: dict[str, torch.Tensor],
    segs: list[int],
    labels: list[str],
    layers: list[dict[str, Any]],
    figure: dict[str, int],
    thresholds: AnalysisThresholds,
) -> dict[str, np.ndarray]:
    """The figure utterance's maps and the batch's per-layer curves (see analyze_batch)."""
    f32 = np.float32
    return {
        "attention": u["attention_mean"][figure["attention_layer"]].numpy().astype(f32),
        "segments": np.asarray(segs, dtype=np.int64),
        "token_labels": np.asarray(labels, dtype=str),
        "sink_scores": u["scores"].numpy().astype(f32),
        "hidden_abs": u["abs_hidden"][figure["hidden_layer"]].numpy().astype(f32),
        "cosine_bos": u["cosine"].numpy().astype(f32),
        "topk": np.asarray([x["massive"]["top"] for x in layers], dtype=f32),
        **{
            k: np.asarray([x["massive"][k] for x in layers], dtype=f32)
            for k in ("median", "top1_over_median")
        },
        **{k: np.asarray([math.nan if x[k] is None else x[k] for x in layers], dtype=f32) for k in CURVES},
        "thresholds": np.asarray([thresholds.sink, thresholds.massive_abs, thresholds.massive_ratio], f32),
        **{k: np.asarray(v, dtype=np.int64) for k, v in figure.items()},
    }


class _Locator:
    """Where a token of the batch is: utterance, position, segment and token text."""

    def __init__(self, segs: list[list[int]], labels: list[list[str]]) -> None:
        self.segs, self.labels = segs, labels

    def __call__(self, b: int, j: int) -> dict[str, Any]:
        return {
            "utterance": b,
            "position": j,
            "segment": segment_name(self.segs[b][j]),
            "token": self.labels[b][j] or None,
        }


def _layer_record(
    layer: int,
    per_utt: list[dict[str, torch.Tensor]],
    groups: dict[str, list[torch.Tensor]],
    where: _Locator,
    massive_features: list[int],
) -> dict[str, Any]:
    """One layer's sinks, BOS cosines (overall and per segment group) and massive activations."""
    batch = len(per_utt)
    sinks, cos_sink, cos_other = [], [], []
    by_group = {name: {"sinks": 0, "sink_cos": [], "other_cos": []} for name in SEGMENT_GROUPS}
    for b, u in enumerate(per_utt):
        hits = u["is_sink"][layer]  # (heads, n)
        for j in hits[:, 1:].any(0).nonzero()[:, 0].add(1).tolist():
            heads = hits[:, j].nonzero()[:, 0].tolist()
            sinks.append(where(b, j) | {"heads": heads, "score": float(u["scores"][layer, heads, j].max())})
        token_sink = hits.any(0)[1:]
        cos_sink += u["cosine"][layer, 1:][token_sink].tolist()
        cos_other += u["cosine"][layer, 1:][~token_sink].tolist()
        for name, member in groups.items():
            inside = member[b][1:]
            by_group[name]["sinks"] += int((token_sink & inside).sum())
            by_group[name]["sink_cos"] += u["cosine"][layer, 1:][token_sink & inside].tolist()
            by_group[name]["other_cos"] += u["cosine"][layer, 1:][~token_sink & inside].tolist()
    mlp = {f for u in per_utt for f in u["mlp_massive"][layer].nonzero()[:, 1].tolist()}
    return {
        "layer": layer,
        "bos_sink_share": _mean([float((u["is_sink"][layer, :, 0]).float().mean()) for u in per_utt]),
        "bos_sink_score_mean": _mean([float(u["scores"][layer, :, 0].mean()) for u in per_utt]),
        "massive_token_sink_share": _mean(
            [float(u["massive_token_sink"][layer].float().mean()) for u in per_utt]
        ),
        "massive_token_sink_score_mean": _mean(
            [float(u["massive_token_scores"][layer].mean()) for u in per_utt]
        ),
        "intermediate_sink_count": len(sinks) / batch,
        "intermediate_sinks": sinks,
        "intermediate_sinks_by_segment": dict(Counter(s["segment"] for s in sinks)),
        "intermediate_sinks_by_token": dict(Counter(s["token"] for s in sinks if s["token"])),
        "by_group": {
            name: {
                "sinks_per_utterance": g["sinks"] / batch,
                "cosine_bos_sink": _mean(g["sink_cos"]),
                "cosine_bos_nonsink": _mean(g["other_cos"]),
            }
            for name, g in by_group.items()
        },
        "massive": _layer_massive(layer, per_utt, where),
        "mlp_massive_features": sorted(mlp & set(massive_features)),
        "cosine_bos_sink": _mean(cos_sink),
        "cosine_bos_nonsink": _mean(cos_other),
        "sink_tokens": len(cos_sink),
        "nonsink_tokens": len(cos_other),
    }


def _layer_massive(layer: int, per_utt: list[dict[str, torch.Tensor]], where: _Locator) -> dict[str, Any]:
    """The layer's top |h| and median from the utterance with the largest top-1, and every massive entry."""
    top_b = max(range(len(per_utt)), key=lambda b: float(per_utt[b]["top"][layer, 0]))
    entries = [(b, *e) for b, u in enumerate(per_utt) for e in u["massive"][layer].nonzero().tolist()]
    carriers: dict[tuple[int, int], list[int]] = {}
    for b, j, f in entries:
        carriers.setdefault((b, j), []).append(f)
    top = per_utt[top_b]
    return {
        "utterance": top_b,
        "top": [float(v) for v in top["top"][layer]],
        "median": float(top["median"][layer]),
        "top1_over_median": float(top["top"][layer, 0] / top["median"][layer]),
        "count": len(entries),
        "count_non_bos": sum(j != 0 for _, j, _ in entries),
        "utterances_with": len({b for b, _, _ in entries}),
        "features": [{"feature": f, "entries": c} for f, c in sorted(Counter(e[2] for e in entries).items())],
        "tokens": [
            where(b, j)
            | {"features": sorted(fs), "max_abs": float(per_utt[b]["abs_hidden"][layer, j, fs].max())}
            for (b, j), fs in sorted(carriers.items())
        ],
    }


def _figure_choice(
    u: dict[str, torch.Tensor],
    segs: list[int],
    utterance: int,
    attention_layer: int | None,
    hidden_layer: int | None,
) -> dict[str, int]:
    """The figure's utterance, layers and tokens (see analyze_batch: the defaults' rules)."""
    if hidden_layer is None:
        hidden_layer = int((u["top"][:, 0] / u["median"]).argmax())
    inter = u["is_sink"][:, :, 1:].any(1).sum(1)  # (L,) intermediate sink tokens per layer
    if attention_layer is None:
        # The paper's map shows both kinds of sink: prefer the layers where BOS is a sink in most heads.
        bos_layers = u["is_sink"][:, :, 0].float().mean(1) >= 0.5  # (L,)
        pool = inter * bos_layers if bool((inter * bos_layers).any()) else inter
        attention_layer = int(pool.argmax()) if int(pool.max()) > 0 else hidden_layer
    hits = [0, *u["is_sink"][:, :, 1:].sum((0, 1)).tolist()]  # (layer, head) pairs where token j sinks
    sink_token = max(range(len(hits)), key=lambda j: (hits[j], -j)) if max(hits) > 0 else -1
    never = [j for j in range(1, len(hits)) if hits[j] == 0]
    features_first = [j for j in never if segs[j] in (Segment.AUDIO, Segment.VIDEO)] + never
    return {
        "utterance": utterance,
        "attention_layer": attention_layer,
        "hidden_layer": hidden_layer,
        "sink_token": sink_token,
        "nonsink_token": features_first[0] if features_first else -1,
    }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _one_utterance(b, attentions, hidden_states, mlp_outputs, attention_mask, th) -> dict[str, torch.Tensor]:
    """Everything per (layer, head, token) of row ``b``, on its real tokens, in float32 on the CPU."""
    index = attention_mask[b].nonzero()[:, 0].cpu()
    n_layers, n = len(attentions), len(index)

    def real(t: torch.Tensor) -> torch.Tensor:
        return t[b].detach().float().cpu()[index]  # (n, ...)

    maps = torch.stack(
        [a[b].detach().float().cpu()[:, index][:, :, index] for a in attentions]
    )  # (L, h, n, n)
    hidden = torch.stack([real(h) for h in hidden_states[1:]])  # (L, n, H)
    mlp = torch.stack([real(m) for m in mlp_outputs])  # (L, n, H)
    abs_hidden, abs_mlp = hidden.abs(), mlp.abs()

    def massive(mags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        median = mags.reshape(n_layers, -1).median(dim=1).values  # (L,), the lower middle value
        passed = (mags > th.massive_abs) & (mags >= th.massive_ratio * median[:, None, None])
        return passed, median

    is_massive, median = massive(abs_hidden)
    mlp_massive, _ = massive(abs_mlp)
    scores = torch.stack([sink_scores(m, n) for m in maps])  # (L, heads, n)
    queries = torch.arange(n, 0, -1)  # (n,): real queries that see each position
    is_sink = (scores > th.sink) & (queries >= th.min_queries)
    # tokens with a massive entry in some layer, seen by enough queries to count as sinks
    carriers = is_massive.any(dim=2).any(dim=0) & (queries >= th.min_queries)  # (n,)
    carriers[0] = True
    massive_token_scores = scores[:, :, carriers].sum(-1)  # (L, heads)
    return {
        "index": index,
        "attention_mean": maps.mean(1),  # (L, n, n)
        "scores": scores,
        "is_sink": is_sink,
        "massive_token_scores": massive_token_scores,
        "massive_token_sink": massive_token_scores > th.sink,  # (L, heads)
        "abs_hidden": abs_hidden,
        "top": abs_hidden.reshape(n_layers, -1).topk(min(3, n * hidden.shape[-1]), dim=1).values,  # (L, 3)
        "median": median,
        "massive": is_massive,  # (L, n, H)
        "mlp_massive": mlp_massive,  # (L, n, H)
        "cosine": torch.nn.functional.cosine_similarity(hidden, hidden[:, :1], dim=-1),  # (L, n)
    }
