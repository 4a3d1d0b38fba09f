"""Batched deterministic decoding and word error rate (jiwer)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jiwer
import pandas as pd
import torch
from tqdm import tqdm

from avsr_sinks.features.store import FeatureDataset, collate_features
from avsr_sinks.io import atomic_path, write_json_atomic
from avsr_sinks.modeling.avsr_model import AVSRModel

log = logging.getLogger(__name__)

_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower-case and collapse whitespace (PAPER.md: WER after lower-casing)."""
    return _SPACES.sub(" ", text.lower()).strip()


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Any]:
    """Total word edits over total reference words, with the edit counts behind it."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    if any(not r for r in refs):
        raise ValueError("a reference transcript is empty after normalisation; WER is undefined for it")
    out = jiwer.process_words(refs, hyps)
    words = out.hits + out.substitutions + out.deletions
    return {
        "wer": (out.substitutions + out.deletions + out.insertions) / words,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "reference_words": words,
        "utterances": len(refs),
    }


def decode_dataset(
    model: AVSRModel,
    dataset: FeatureDataset,
    batch_size: int,
    beam_size: int,
    max_new_tokens: int,
    text_only: bool = False,
    autocast_bf16_on_cpu: bool = False,
) -> pd.DataFrame:
    """Hypotheses for every utterance, in dataset order (columns uid, reference, hypothesis).

    ``text_only`` drops every modality block, so the LLM decodes from ``[BOS] prompt`` alone: the floor
    that a model using its audio or video must beat. ``autocast_bf16_on_cpu`` runs the CPU's share of the
    decoding under bf16 autocast (decode.autocast_bf16_on_cpu).
    """
    model.eval()
    rows = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="decode", mininterval=5):
        batch = collate_features([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        features = [{} for _ in batch["features"]] if text_only else batch["features"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16_on_cpu):
            hyps = model.generate(features, beam_size=beam_size, max_new_tokens=max_new_tokens)
        rows += [
            {"uid": u, "reference": r, "hypothesis": h}
            for u, r, h in zip(batch["uids"], batch["transcripts"], hyps, strict=True)
        ]
    return pd.DataFrame(rows, columns=["uid", "reference", "hypothesis"])


def write_evaluation(
    hyps: pd.DataFrame, json_path: Path, csv_path: Path, record: dict[str, Any]
) -> dict[str, Any]:
    """Score the hypotheses and write ``<condition>.hyp.csv`` and ``<condition>.json`` atomically."""
    scores = word_error_rate(hyps["reference"].tolist(), hyps["hypothesis"].tolist())
    with atomic_path(csv_path) as tmp:
        hyps.to_csv(tmp, index=False)
    write_json_atomic(json_path, {**record, **scores})
    return scores


@torch.inference_mode()
def teacher_forced_ce(
    model: AVSRModel,
    dataset: FeatureDataset,
    batch_size: int,
    forward: Callable[[Sequence[Any], Sequence[str]], tuple[Any, Any]] | None = None,
) -> float:
    """Cross-entropy per transcript token (transcript + EOS) over the dataset, the reference given.

    ``forward(features, transcripts)`` runs one batch (default: the model's own teacher-forced pass)."""
    model.eval()
    forward = forward if forward is not None else model
    total, tokens = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collate_features([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        out, assembled = forward(batch["features"], batch["transcripts"])
        # transformers averages over the batch's predicted tokens; weigh each batch by its count.
        count = int((assembled.labels[:, 1:] != -100).sum())
        total += float(out.loss) * count
        tokens += count
    return total / tokens
