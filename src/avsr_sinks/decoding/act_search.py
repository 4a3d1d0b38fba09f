"""ACT's head search for one checkpoint (PAPER.md section 4): score each candidate head on validation data.

Decoding finds each head's sinks on the prefill, the prefix alone, and keeps them for every generated
token. The teacher-forced score therefore finds them the same way: a pass over the prefix stores the sink
sets, then the teacher-forced pass over prefix + transcript applies those stored sets (a frozen
calibration), so a head is scored under exactly the calibration that decoding would apply. A single
teacher-forced pass would find the sinks with the transcript in view, which moves most heads' sinks.

Most of the search scores one head alone, and :class:`SingleHeadScorer` does that exactly but without
repeating what does not change: calibrating head (l, h) alone leaves layers 0..l-1 and every attention
map of layer l as they are uncalibrated, so one uncalibrated prefix pass gives every candidate's sink sets
and one uncalibrated teacher-forced pass gives every layer's input; a candidate then runs layers l..L-1
only (about half the model on average, against two whole passes).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from avsr_sinks.decoding.act import (
    Calibration,
    Head,
    calibrate,
    calibrate_as_set,
    candidate_heads,
    search_heads,
)
from avsr_sinks.decoding.decode import decode_dataset, teacher_forced_ce, word_error_rate
from avsr_sinks.features.store import FeatureDataset, collate_features
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.layer_outputs import recorded_inputs
from avsr_sinks.modeling.precision import cpu_bf16_autocast
from avsr_sinks.settings.spec import ActSpec, DecodeSpec

log = logging.getLogger(__name__)

SEARCH_METRICS = ("ce", "wer")


@torch.inference_mode()
def prefix_calibrated_ce(
    model: AVSRModel, dataset: FeatureDataset, batch_size: int, calibration: Calibration
) -> float:
    """Cross-entropy per transcript token (transcript + EOS), the reference given, with ``calibration``'s
    sink sets found on each batch's prefix alone, as decoding finds them. Run inside its calibrate() block.
    """

    def forward(features, transcripts):
        # Right padding in both passes: the prefix sits at the same positions in each.
        prefix = model.assemble(features, padding_side="right")
        model.llm(inputs_embeds=prefix.inputs_embeds, attention_mask=prefix.attention_mask)
        calibration.freeze = True
        try:
            return model(features, transcripts)
        finally:
            calibration.freeze = False

    return teacher_forced_ce(model, dataset, batch_size, forward)


@dataclass
class _SearchBatch:
    """One batch of the search set, uncalibrated: the teacher-forced input, each decoder layer's input,
    and the sink sets every head of every candidate layer has on the prefix."""

    attention_mask: torch.Tensor  # (B, S)
    labels: torch.Tensor  # (B, S)
    layer_inputs: list[torch.Tensor]  # L x (B, S, H)
    sinks: dict[int, torch.Tensor]  # layer -> (B, heads, prefix length), Calibration.sinks' layout
    first: dict[int, torch.Tensor]  # layer -> (B,)
    tokens: int  # label tokens of the batch


@contextmanager
def _layers_from(decoder: nn.Module, first_layer: int) -> Iterator[None]:
    """The decoder runs layers ``first_layer``.. only: its inputs_embeds are then that layer's input."""
    layers = decoder.layers
    decoder.layers = nn.ModuleList(list(layers)[first_layer:])
    try:
        yield
    finally:
        decoder.layers = layers


class SingleHeadScorer:
    """The prefix-calibrated cross-entropy of :func:`prefix_calibrated_ce` for one head calibrated alone,
    equal to it (the same operations on the same values) at a fraction of its cost (module docstring)."""

    def __init__(self, model: AVSRModel, dataset: FeatureDataset, batch_size: int, act: ActSpec) -> None:
        self.model, self.act = model, act
        self.decoder = model.llm.get_base_model().get_decoder()
        config = model.llm.get_base_model().config
        self.candidates = candidate_heads(config.num_hidden_layers, config.num_attention_heads)
        model.eval()
        self.batches = [
            self._prepare(
                collate_features([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            )
            for start in range(0, len(dataset), batch_size)
        ]

    @torch.inference_mode()
    def _prepare(self, batch: Mapping[str, Any]) -> _SearchBatch:
        prefix = self.model.assemble(batch["features"], padding_side="right")
        full = self.model.assemble(batch["features"], batch["transcripts"])
        # beta 1 leaves every attention row as it is: the sinks found are the uncalibrated model's.
        with calibrate(
            self.model, self.candidates, 1.0, self.act.sink_threshold, self.act.exempt_key
        ) as found:
            self.decoder(inputs_embeds=prefix.inputs_embeds, attention_mask=prefix.attention_mask)
        # Under calibrate() with no heads: eager attention, as the calibrated passes compute their layers.
        with calibrate(self.model, ()), recorded_inputs(self.decoder.layers) as inputs:
            self.decoder(
                inputs_embeds=full.inputs_embeds, attention_mask=full.attention_mask, use_cache=False
            )
        return _SearchBatch(
            attention_mask=full.attention_mask,
            labels=full.labels,
            layer_inputs=list(inputs),
            sinks=dict(found.sinks),
            first=dict(found.first),
            tokens=int((full.labels[:, 1:] != -100).sum()),
        )

    @torch.inference_mode()
    def __call__(self, head: Head) -> float:
        layer, index = head
        total = 0.0
        with calibrate_as_set(self.model, {head}, self.act) as calibration, _layers_from(self.decoder, layer):
            calibration.freeze = True
            for batch in self.batches:
                # Every head of a candidate layer is a candidate, so a head's column is its index.
                calibration.sinks = {layer: batch.sinks[layer][:, index : index + 1]}
                calibration.first = {layer: batch.first[layer]}
                out = self.decoder(
                    inputs_embeds=batch.layer_inputs[layer],
                    attention_mask=batch.attention_mask,
                    use_cache=False,
                )
                total += float(self.model.label_cross_entropy(out.last_hidden_state, batch.labels, "sum"))
        return total / sum(batch.tokens for batch in self.batches)


def search_act_heads(
    model: AVSRModel, dataset: FeatureDataset, act: ActSpec, decode: DecodeSpec
) -> dict[str, Any]:
    """Score the baseline and each candidate head calibrated alone on the first ``act.search_utterances``
    utterances (teacher-forced cross-entropy under the decoder's sink sets, or beam-search WER), keep the
    heads that help.

    Returns search_heads' record plus the settings it ran under.
    """
    if act.search_metric not in SEARCH_METRICS:
        raise ValueError(f"act.search_metric must be one of {SEARCH_METRICS}, got {act.search_metric!r}")
    subset = Subset(dataset, range(min(act.search_utterances, len(dataset))))
    config = model.llm.get_base_model().config
    autocast = cpu_bf16_autocast(decode.autocast_bf16_on_cpu)

    single_head = (
        SingleHeadScorer(model, subset, decode.batch_size, act) if act.search_metric == "ce" else None
    )

    def score(heads: frozenset[Head]) -> float:
        if single_head is not None and len(heads) == 1:
            value = single_head(next(iter(heads)))
            log.info("ACT heads %s: ce %.4f", sorted(heads), value)
            return value
        with calibrate_as_set(model, heads, act) as calibration:
            if act.search_metric == "ce":
                value = prefix_calibrated_ce(model, subset, decode.batch_size, calibration)
            else:
                hyps = decode_dataset(
                    model,
                    subset,
                    decode.batch_size,
                    decode.beam_size,
                    decode.max_new_tokens,
                    autocast_bf16_on_cpu=autocast,
                )
                value = word_error_rate(hyps["reference"].tolist(), hyps["hypothesis"].tolist())["wer"]
        log.info("ACT heads %s: %s %.4f", sorted(heads), act.search_metric, value)
        return value

    result = search_heads(score, candidate_heads(config.num_hidden_layers, config.num_attention_heads))
    return {**result, "metric": act.search_metric, "utterances": len(subset), "act": dataclasses.asdict(act)}
