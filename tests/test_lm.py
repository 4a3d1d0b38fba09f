import math
from pathlib import Path

from avsr_sinks.lm import copy_cross_entropy, pack_sentences, train_tokenizer
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
    plain = pack_sentences(tok, SENTENCES, seq_len=16)
    copied = pack_sentences(tok, SENTENCES, seq_len=16, copy_fraction=1.0)
    assert (plain[:, 0] == tok.bos_token_id).all() and (copied[:, 0] == tok.bos_token_id).all()
    body = lambda rows: [t for row in rows[:, 1:].tolist() for t in row]  # noqa: E731
    first = tok("the cat sat on the mat", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    stream = body(copied)
    assert stream[: 2 * len(first)] == first + first
    assert body(plain)[: 2 * len(first)] != first + first
    assert copied.shape[0] >= 2 * plain.shape[0] - 1


def test_copy_metric_reports_both_readings(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    scores = copy_cross_entropy(llm, tok, SENTENCES[:3])
    assert set(scores) == {"first_reading_ce", "repeat_reading_ce"}
    assert all(math.isfinite(v) and v > 0 for v in scores.values())
