"""Zero-shot Whisper on a corpus split: is the (synthetic) speech intelligible? Character and word error
rates after lower-casing and removing punctuation, overall and per speaker."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jiwer

from avsr_sinks.data.manifest import Utterance
from avsr_sinks.data.media import read_audio
from avsr_sinks.encoders.whisper import transcribe

CHUNK = 32  # utterances per Whisper call: bounds the memory of 30 s mel windows


def plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def by_speaker(
    utterances: Sequence[Utterance], refs: list[str], hyps: list[str]
) -> dict[str, dict[str, float]]:
    """CER and WER per speaker folder (the relative path's second-to-last part), to find a bad voice."""
    groups: dict[str, list[int]] = {}
    for i, utt in enumerate(utterances):
        groups.setdefault(Path(utt.relative_path).parent.name, []).append(i)
    return {
        speaker: {
            "utterances": len(idx),
            "cer": jiwer.cer([refs[i] for i in idx], [hyps[i] for i in idx]),
            "wer": jiwer.wer([refs[i] for i in idx], [hyps[i] for i in idx]),
        }
        for speaker, idx in sorted(groups.items())
    }


def whisper_error_rates(
    utterances: Sequence[Utterance], whisper_dir: Path, window_seconds: float
) -> dict[str, Any]:
    """Transcribe every utterance with the Whisper folder and score it against its transcript."""
    hyps: list[str] = []
    for start in range(0, len(utterances), CHUNK):
        chunk = utterances[start : start + CHUNK]
        hyps += transcribe(whisper_dir, [read_audio(u.audio_path) for u in chunk], window_seconds)
    refs = [plain(u.transcript) for u in utterances]
    hyps = [plain(h) for h in hyps]
    return {
        "utterances": len(refs),
        "whisper": str(whisper_dir),
        "window_seconds": window_seconds,
        "cer": jiwer.cer(refs, hyps),
        "wer": jiwer.wer(refs, hyps),
        "by_speaker": by_speaker(utterances, refs, hyps),
        "examples": [{"reference": r, "hypothesis": h} for r, h in list(zip(refs, hyps, strict=True))[:10]],
    }
