"""Capturing what the sink analysis reads from an AVSR model, and writing its results.

One teacher-forced pass gives the attention weights, hidden states and every decoder layer's MLP output
(analysis.analyze_batch's inputs); write_analysis stores the metrics and the arrays behind the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsr_sinks.analysis.metrics import analyze_batch
from avsr_sinks.analysis.thresholds import AnalysisThresholds
from avsr_sinks.io import atomic_path, git_commit, write_json_atomic
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.layer_outputs import decoder_layers, recorded_outputs
from avsr_sinks.modeling.llm import SPECIAL_TOKENS
from avsr_sinks.modeling.segments import Segment


@dataclass
class Captured:
    """One teacher-forced pass of an AVSRModel: the arguments of ``analyze_batch``."""

    attentions: list[torch.Tensor]  # L x (B, heads, S, S)
    hidden_states: list[torch.Tensor]  # (L + 1) x (B, S, H): embeddings, then each layer's raw output
    mlp_outputs: list[torch.Tensor]  # L x (B, S, H)
    segments: torch.Tensor  # (B, S)
    attention_mask: torch.Tensor  # (B, S)
    token_labels: list[list[str]]  # B x S, "" for feature and padding positions

    def analyze(
        self, thresholds: AnalysisThresholds | None = None
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``analyze_batch`` on this pass (default thresholds: PAPER.md's)."""
        return analyze_batch(
            self.attentions,
            self.hidden_states,
            self.mlp_outputs,
            self.segments,
            self.attention_mask,
            thresholds if thresholds is not None else AnalysisThresholds(),
            token_labels=self.token_labels,
        )


def _token_labels(model: AVSRModel, features, transcripts, segments: torch.Tensor) -> list[list[str]]:
    """The token string at each position of the assembled rows ("" for feature tokens and padding),
    rebuilt from the config and tokenizer in the order ``AVSRModel.assemble`` lays a row out."""
    tok = model.tokenizer
    prompt = tok.convert_ids_to_tokens(tok(model.cfg.prompt, add_special_tokens=False)["input_ids"])
    rows = []
    for b, (sample, text) in enumerate(zip(features, transcripts, strict=True)):
        queues = {
            Segment.BOS: [tok.bos_token],
            Segment.DELIMITER: [t for m in model.cfg.modalities if m in sample for t in SPECIAL_TOKENS[m]],
            Segment.PROMPT: list(prompt),
            Segment.RESPONSE: [
                *tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"]),
                tok.eos_token,
            ],
        }
        row = []
        for kind in map(Segment, segments[b].tolist()):
            if kind in queues and not queues[kind]:
                raise RuntimeError(f"row {b}: more {kind.name} positions than AVSRModel.assemble lays out")
            row.append(queues[kind].pop(0) if kind in queues else "")
        if any(queues.values()):
            raise RuntimeError(f"row {b}: fewer positions than AVSRModel.assemble lays out: {queues}")
        rows.append(row)
    return rows


def collect(
    model: AVSRModel,
    features: Sequence[Mapping[str, torch.Tensor]],
    transcripts: Sequence[str],
    attention_functions: Sequence[str] = ("eager",),
) -> Captured:
    """One teacher-forced pass of ``model`` (eval mode, no gradients) with attentions, the embedding output
    and every decoder layer's raw output and MLP output (forward hooks, removed afterwards even on error;
    the last layer's output is read before the final norm, see avsr_sinks.modeling.layer_outputs), for
    ``analyze_batch``.

    The attention weights only exist under an attention function that returns them: "eager", or a
    function registered with transformers' attention interface (e.g. ACT's) named in
    ``attention_functions``; anything else (sdpa, flash) is refused up front.
    """
    base = model.llm.get_base_model()
    implementation = base.config._attn_implementation
    if implementation not in attention_functions:
        raise ValueError(
            f"the sink analysis needs attention weights, but the LLM runs attn_implementation="
            f"{implementation!r}; load it with one of {list(attention_functions)} (model.attn_implementation)"
        )
    layers = decoder_layers(base)
    was_training = model.training
    try:
        model.eval()  # LoRA dropout off: the analysis measures the model, not a noisy sample of it
        with (
            recorded_outputs(list(layers)) as layer_outputs,
            recorded_outputs([layer.mlp for layer in layers]) as mlp_outputs,
            torch.no_grad(),
        ):
            batch = model.assemble(features, transcripts)
            out = model.llm(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                output_attentions=True,
                output_hidden_states=True,
            )
    finally:
        model.train(was_training)
    captured = [*layer_outputs, *mlp_outputs]
    if not out.attentions or any(a is None for a in out.attentions) or any(m is None for m in captured):
        raise RuntimeError(
            f"attn_implementation {implementation!r} returned no attention weights or a decoder layer or its "
            "MLP never ran; the analysis needs an attention function that returns its weights"
        )
    return Captured(
        attentions=list(out.attentions),
        # The embedding output, then each decoder layer's own output (the last one before the final norm).
        hidden_states=[out.hidden_states[0], *layer_outputs],
        mlp_outputs=list(mlp_outputs),
        segments=batch.segments,
        attention_mask=batch.attention_mask,
        token_labels=_token_labels(model, features, transcripts, batch.segments),
    )


def write_analysis(
    folder: str | Path, metrics: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> tuple[Path, Path]:
    """Write ``folder/metrics.json`` (with the git commit added when absent) and ``folder/arrays.npz``,
    each atomically; the arrays first, so a metrics.json on disk always has its arrays beside it.

    Arrays must load without pickle (numbers or strings); NaN in the metrics is refused, as JSON has none.
    """
    folder = Path(folder)
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray) or v.dtype.kind not in "biufU")
    if odd:
        raise ValueError(f"arrays {odd} are not numeric or string numpy arrays; npz would need pickle")
    npz = folder / "arrays.npz"
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    out = folder / "metrics.json"
    metrics = {"git_commit": git_commit(), **metrics}
    _refuse_nan(metrics, "metrics")
    write_json_atomic(out, metrics)
    return out, npz


def _refuse_nan(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; use None for a missing value (JSON has no NaN)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_nan(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_nan(item, f"{where}[{i}]")
