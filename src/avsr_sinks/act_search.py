"""ACT's head search for one checkpoint (PAPER.md section 4): score each candidate head on validation data.

Decoding finds each head's sinks on the prefill, the prefix alone, and keeps them for every generated
token. The teacher-forced score therefore finds them the same way: a pass over the prefix stores the sink
sets, then the teacher-forced pass over prefix + transcript applies those stored sets (a frozen
calibration), so a head is scored under exactly the calibration that decoding would apply. A single
teacher-forced pass would find the sinks with the transcript in view, which moves most heads' sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import Subset

from avsr_sinks.act import Calibration, Head, calibrate_as_set, candidate_heads, search_heads
from avsr_sinks.decode import decode_dataset, teacher_forced_ce, word_error_rate
from avsr_sinks.features import FeatureDataset
from avsr_sinks.model import AVSRModel

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


def search_act_heads(
    model: AVSRModel, dataset: FeatureDataset, act: Mapping[str, Any], decode: Mapping[str, Any]
) -> dict[str, Any]:
    """Score the baseline and each candidate head calibrated alone on the first ``act.search_utterances``
    utterances (teacher-forced cross-entropy under the decoder's sink sets, or beam-search WER), keep the
    heads that help.

    Returns search_heads' record plus the settings it ran under.
    """
    if act["search_metric"] not in SEARCH_METRICS:
        raise ValueError(f"act.search_metric must be one of {SEARCH_METRICS}, got {act['search_metric']!r}")
    subset = Subset(dataset, range(min(act["search_utterances"], len(dataset))))
    config = model.llm.get_base_model().config

    def score(heads: frozenset[Head]) -> float:
        with calibrate_as_set(model, heads, act) as calibration:
            if act["search_metric"] == "ce":
                value = prefix_calibrated_ce(model, subset, decode["batch_size"], calibration)
            else:
                hyps = decode_dataset(
                    model, subset, decode["batch_size"], decode["beam_size"], decode["max_new_tokens"]
                )
                value = word_error_rate(hyps["reference"].tolist(), hyps["hypothesis"].tolist())["wer"]
        log.info("ACT heads %s: %s %.4f", sorted(heads), act["search_metric"], value)
        return value

    result = search_heads(score, candidate_heads(config.num_hidden_layers, config.num_attention_heads))
    return {**result, "metric": act["search_metric"], "utterances": len(subset), "act": dict(act)}
