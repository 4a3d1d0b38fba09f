import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from avsr_sinks.lm import (
    STRETCH_MAX_FILL,
    STRETCH_MAX_REPEAT,
    copy_cross_entropy,
    pack_sentences,
    train_tokenizer,
)
from avsr_sinks.model import load_llm

SENTENCES = ["the cat sat on the mat", "a dog runs in the park", "we will go home soon"] * 20


def test_tokenizer_round_trip_and_special_tokens() -> None:
    tok = train_tokenizer(SENTENCES, vocab_size=120)
    ids = tok("the cat sat", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "the cat sat"
    for token in ("<s>", "</s>", "<pad>", "<audio>", "</audio>", "<video>", "</video>"):
        assert token in tok.get_vocab()


def test_packing_repeats_sentences_only_when_asked() -> None:
    tok = train_tokenizer(SENTENCES, vocab_size=120)
    plain, plain_labels = pack_sentences(tok, SENTENCES, seq_len=16)
    copied, copied_labels = pack_sentences(tok, SENTENCES, seq_len=16, copy_fraction=1.0)
    assert (plain[:, 0] == tok.bos_token_id).all() and (copied[:, 0] == tok.bos_token_id).all()
    body = lambda rows: [t for row in rows[:, 1:].tolist() for t in row]  # noqa: E731
    first = tok("the cat sat on the mat", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    stream = body(copied)
    assert stream[: 2 * len(first)] == first + first
    assert body(plain)[: 2 * len(first)] != first + first
    assert copied.shape[0] >= 2 * plain.shape[0] - 1
    for ids, labels in ((plain, plain_labels), (copied, copied_labels)):
        assert (labels[:, 0] == -100).all() and torch.equal(labels[:, 1:], ids[:, 1:])


def test_stretched_first_reading_is_context_only() -> None:
    tok = train_tokenizer(SENTENCES, vocab_size=120)
    ids, labels = pack_sentences(tok, SENTENCES, seq_len=400, copy_fraction=1.0, stretch_fraction=1.0)
    stream, targets = ids[0, 1:].tolist(), labels[0, 1:].tolist()
    first = tok("the cat sat on the mat", add_special_tokens=False)["input_ids"]
    stretched = stream[: stream.index(tok.eos_token_id)]
    collapsed = [
        t for i, t in enumerate(stretched) if t != tok.pad_token_id and (i == 0 or t != stretched[i - 1])
    ]
    assert collapsed == first and len(stretched) > len(first)
    assert len(stretched) <= len(first) * (STRETCH_MAX_REPEAT + STRETCH_MAX_FILL)
    clean = len(stretched) + 1
    assert targets[:clean] == [-100] * clean
    assert stream[clean : clean + len(first) + 1] == first + [tok.eos_token_id]
    assert targets[clean : clean + len(first) + 1] == first + [tok.eos_token_id]


def test_copy_metric_reports_both_readings(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    scores = copy_cross_entropy(llm, tok, SENTENCES[:3])
    assert set(scores) == {"first_reading_ce", "repeat_reading_ce"}
    assert all(math.isfinite(v) and v > 0 for v in scores.values())


def test_stretch_phase_continues_the_copy_phase_lm(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from avsr_sinks.lm import LMPretrainConfig, StretchPhaseConfig, continue_stretched

    phase = StretchPhaseConfig(steps=3, lr=1e-2, warmup_steps=1, seq_len=48, stretch_fraction=0.5, seed=1)
    cfg = LMPretrainConfig(
        seed=0, layers=2, hidden=32, heads=2, intermediate=64, seq_len=32, batch_size=4, steps=5, lr=1e-3,
        warmup_steps=1, copy_fraction=1.0, stretch_phase=phase,
    )  # fmt: skip
    out = tmp_path / "lm"
    summary = continue_stretched(cfg, tiny_lm_dir, SENTENCES, SENTENCES[:4], out, tmp_path / "log.csv")
    assert math.isfinite(summary["heldout_perplexity"]) and summary["train_rows"] > 0
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 1 + phase.steps
    before, after = load_file(tiny_lm_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "tokenizer.json").read_bytes() == (tiny_lm_dir / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="stretch_phase.steps is 0"):
        no_phase = replace(cfg, stretch_phase=replace(phase, steps=0))
        continue_stretched(no_phase, tiny_lm_dir, SENTENCES, [], out, tmp_path / "l")


def test_measuring_along_the_way_leaves_training_unchanged(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """bench/lm_budget.py measures the LM between steps: the hook sees every step, and the weights come
    out as without it."""
    from safetensors.torch import load_file

    from avsr_sinks.analysis import lm_phenomena
    from avsr_sinks.lm import LMPretrainConfig, StretchPhaseConfig, continue_stretched

    phase = StretchPhaseConfig(steps=3, lr=1e-2, warmup_steps=1, seq_len=48, stretch_fraction=0.5, seed=1)
    cfg = LMPretrainConfig(
        seed=0, layers=2, hidden=32, heads=2, intermediate=64, seq_len=32, batch_size=4, steps=5, lr=1e-3,
        warmup_steps=1, copy_fraction=1.0, stretch_phase=phase,
    )  # fmt: skip
    _, tokenizer = load_llm(tiny_lm_dir)
    seen = []

    def measure(step: int, model) -> None:
        seen.append(step)
        lm_phenomena(model, tokenizer, SENTENCES[:2])
        model.train()

    runs = {}
    for name, hook in (("plain", None), ("measured", measure)):
        continue_stretched(
            cfg, tiny_lm_dir, SENTENCES, SENTENCES[:4], tmp_path / name, tmp_path / f"{name}.csv", hook
        )
        runs[name] = load_file(tmp_path / name / "model.safetensors")
    assert seen == [1, 2, 3]
    assert all(torch.equal(runs["plain"][k], runs["measured"][k]) for k in runs["plain"])
