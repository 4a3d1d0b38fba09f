"""ACT's head search for one checkpoint (PAPER.md section 4): score each candidate head on validation data."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch.utils.data import Subset

from avsr_sinks.act import Head, calibrate, candidate_heads, search_heads
from avsr_sinks.decode import decode_dataset, teacher_forced_ce, word_error_rate
from avsr_sinks.features import FeatureDataset
from avsr_sinks.model import AVSRModel

log = logging.getLogger(__name__)


def search_act_heads(
    model: AVSRModel, dataset: FeatureDataset, act: Mapping[str, Any], decode: Mapping[str, Any]
) -> dict[str, Any]:
    """Score the baseline and each candidate head calibrated alone on the first ``act.search_utterances``
    utterances (teacher-forced cross-entropy, or beam-search WER), keep the heads that help.

    Returns search_heads' record plus the settings it ran under.
    """
    subset = Subset(dataset, range(min(act["search_utterances"], len(dataset))))
    config = model.llm.get_base_model().config

    def score(heads: frozenset[Head]) -> float:
        with calibrate(model, heads, beta=act["beta"], threshold=act["sink_threshold"]):
            if act["search_metric"] == "ce":
                value = teacher_forced_ce(model, subset, decode["batch_size"])
            else:
                hyps = decode_dataset(
                    model, subset, decode["batch_size"], decode["beam_size"], decode["max_new_tokens"]
                )
                value = word_error_rate(hyps["reference"].tolist(), hyps["hypothesis"].tolist())["wer"]
        log.info("ACT heads %s: %s %.4f", sorted(heads), act["search_metric"], value)
        return value

    result = search_heads(score, candidate_heads(config.num_hidden_layers, config.num_attention_heads))
    return {**result, "metric": act["search_metric"], "utterances": len(subset), "act": dict(act)}
