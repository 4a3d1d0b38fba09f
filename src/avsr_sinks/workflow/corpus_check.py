"""The corpus check a researcher runs by hand (workflow_scripts/check_corpus.py): the corpus check stages'
two passes with the configuration's settings, so that both accept and refuse the same samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avsr_sinks.data.validation import CorpusRules, check_corpus


def corpus_rules(params: Mapping[str, Any]) -> CorpusRules:
    """What a usable sample is under params: the corpus's rules and the audio encoder's window."""
    corpus = params["corpus"]
    return CorpusRules(
        corpus["on_bad_sample"], corpus["av_tolerance_s"], params["audio_encoder"]["window_seconds"]
    )


def check_configured_corpus(
    params: Mapping[str, Any], root: Path | None, splits: Sequence[str]
) -> dict[str, Any]:
    """check_corpus on ``root`` (default: corpus.root) under params' rules, the transcripts checked against
    the LLM's tokenizer where the LLM is installed (the text pass is skipped otherwise)."""
    # Imported here: the media pass's stage reads corpus_rules from this module and never needs
    # transformers, seconds of every start of that job.
    from avsr_sinks.modeling.llm import load_tokenizer

    llm = Path(params["llm"]["path"])
    tokenizer = load_tokenizer(llm) if (llm / "config.json").is_file() else None
    corpus = root or Path(params["corpus"]["root"])
    return check_corpus(corpus, corpus_rules(params), splits, tokenizer)
