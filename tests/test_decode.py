"""Word error rate, decoding a dataset and the teacher-forced cross-entropy (avsr_sinks.decoding.decode).

The WER counts are worked out by hand below; the decoding and cross-entropy loops run on stand-in models
whose outputs are known exactly, plus one run of the real toy model for the token weighting."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from avsr_sinks.decoding.decode import (
    decode_dataset,
    normalize,
    teacher_forced_ce,
    word_error_rate,
    write_evaluation,
)
from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling import precision
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import resolve_run
from avsr_sinks.workflow.checkpoint_stages import evaluate_stage
from tests.conftest import REPO
from tests.train_job import make_features, toy_model_config

# reference            hypothesis            edits (after lower-casing and collapsing spaces)
# "The cat  sat"       "the bat sat down"    cat -> bat (S), + down (I), 2 hits
# "a dog"              "dog"                 - a (D), 1 hit
# "  HELLO world "     "hello   World"       2 hits
# "a dog"              "a dog"               2 hits
REFERENCES = ["The cat  sat", "a dog", "  HELLO world ", "a dog"]
HYPOTHESES = ["the bat sat down", "dog", "hello   World", "a dog"]


def test_normalize_lower_cases_and_collapses_whitespace() -> None:
    assert normalize("  The  CAT\tsat \n") == "the cat sat"
    assert normalize("\t \n") == ""


def test_wer_is_substitutions_deletions_and_insertions_over_reference_words() -> None:
    scores = word_error_rate(REFERENCES, HYPOTHESES)
    assert scores == {
        "wer": pytest.approx(3 / 9),
        "substitutions": 1,
        "deletions": 1,
        "insertions": 1,
        "hits": 7,
        "reference_words": 9,
        "utterances": 4,
    }
    # Insertions alone can push the WER past 1: the denominator is the reference, not the alignment.
    assert word_error_rate(["a"], ["a b c"])["wer"] == 2.0


def test_an_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="empty after normalisation"):
        word_error_rate(["the cat", " \t "], ["the cat", "a"])


def test_write_evaluation_writes_the_hypotheses_and_the_scores_with_the_record(tmp_path: Path) -> None:
    hyps = pd.DataFrame(
        {"uid": [f"u{i}" for i in range(4)], "reference": REFERENCES, "hypothesis": HYPOTHESES}
    )
    record = {"experiment": "avsr-a16v5-baseline-s0", "condition": "clean", "seed": 0}
    json_path, csv_path = tmp_path / "clean.json", tmp_path / "clean.hyp.csv"
    scores = write_evaluation(hyps, json_path, csv_path, record)
    assert scores == word_error_rate(REFERENCES, HYPOTHESES)
    assert json.loads(json_path.read_text()) == {**record, **scores}
    pd.testing.assert_frame_equal(pd.read_csv(csv_path, keep_default_na=False), hyps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.hyp.csv", "clean.json"]  # no temporaries


class StandInDecoder(torch.nn.Module):
    """Answers ``generate`` with a hypothesis naming the modalities and frames it was given, and records
    each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def generate(self, features, beam_size: int, max_new_tokens: int) -> list[str]:
        self.calls.append(
            {
                "batch": len(features),
                "beam": beam_size,
                "max_new": max_new_tokens,
                "training": self.training,
                "bf16_autocast": torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16,
            }
        )
        return [" ".join(f"{m}{len(x)}" for m, x in sorted(f.items())) or "text-only" for f in features]


def _items(n: int) -> list[tuple[str, dict[str, torch.Tensor], str]]:
    return [(f"spk/u{i}", {"audio": torch.zeros(10 + i, 4)}, f"words of {i}") for i in range(n)]


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("text_only", [False, True], ids=["with-features", "text-only"])
def test_decode_dataset_keeps_dataset_order_and_passes_the_search_settings(
    text_only: bool, autocast: bool
) -> None:
    model = StandInDecoder().train()
    frame = decode_dataset(
        model,
        _items(5),
        batch_size=2,
        beam_size=3,
        max_new_tokens=7,
        text_only=text_only,
        autocast_bf16_on_cpu=autocast,
    )
    assert list(frame.columns) == ["uid", "reference", "hypothesis"]
    assert frame["uid"].tolist() == [f"spk/u{i}" for i in range(5)]
    assert frame["reference"].tolist() == [f"words of {i}" for i in range(5)]
    expected = ["text-only"] * 5 if text_only else [f"audio{10 + i}" for i in range(5)]
    assert frame["hypothesis"].tolist() == expected
    assert model.calls == [
        {"batch": b, "beam": 3, "max_new": 7, "training": False, "bf16_autocast": autocast} for b in (2, 2, 1)
    ]


@pytest.mark.parametrize(
    ("setting", "native_bf16", "autocast"),
    [("false", True, False), ("true", False, True), ("auto", True, True), ("auto", False, False)],
    ids=["float32", "bf16-autocast", "auto-on-native-bf16", "auto-on-emulated-bf16"],
)
def test_evaluation_decodes_in_the_precision_params_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, native_bf16: bool, autocast: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"decode:\n  autocast_bf16_on_cpu: {setting}\n")
    spec = resolve_run(load_params([REPO / "params.yaml", overlay]), parse_name("asr-a4-baseline-s0"))
    model = StandInDecoder()
    evaluate_stage(spec, _items(3), model, "clean", None, tmp_path / "clean.json", tmp_path / "clean.hyp.csv")
    assert [call["bf16_autocast"] for call in model.calls] == [autocast]
    record = json.loads((tmp_path / "clean.json").read_text())
    assert record["cpu_bf16_autocast"] is autocast
    assert str(record["decode"]["autocast_bf16_on_cpu"]).lower() == setting  # the setting as params has it


class StandInScorer(torch.nn.Module):
    """A teacher-forced pass with known numbers: utterance ``i`` has ``i + 1`` transcript tokens (plus
    EOS), each with loss ``i``; like transformers, ``loss`` is the mean over the batch's predicted tokens
    (labels after position 0), and the labels hold the input tokens at the other real positions."""

    def forward(self, features, transcripts):
        lengths = [int(t.split()[-1]) + 2 for t in transcripts]  # transcript + EOS
        width = 2 + max(lengths)  # BOS and one prefix token, then the response
        labels = torch.full((len(transcripts), width), -100)
        labels[:, 0] = 1  # BOS is labelled but never predicted: only labels[:, 1:] count
        values = []
        for row, n in enumerate(lengths):
            labels[row, 2 : 2 + n] = 5
            values += [float(n - 2)] * n
        out = SimpleNamespace(loss=torch.tensor(values, dtype=torch.float64).mean())
        return out, SimpleNamespace(labels=labels)


def test_teacher_forced_ce_is_the_mean_over_all_transcript_tokens() -> None:
    items = _items(5)
    # Utterance i: i + 2 tokens of loss i, so the token mean is sum (i + 2) i / sum (i + 2).
    expected = sum((i + 2) * i for i in range(5)) / sum(i + 2 for i in range(5))
    for batch_size in (1, 2, 5):
        assert teacher_forced_ce(StandInScorer(), items, batch_size) == pytest.approx(expected, rel=1e-12)


def test_teacher_forced_ce_of_the_toy_model_does_not_depend_on_the_batch_size(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    """Batches of different token counts are weighted by their tokens, so every batch size gives the
    mean over all tokens of the data set (up to float32 rounding across padded batches)."""
    transcripts = dict(list(make_features(tmp_path / "data").items())[:5])
    dataset = FeatureDataset({"audio": FeatureStore(tmp_path / "data")}, transcripts)
    assert len({len(t.split()) for t in transcripts.values()}) > 1
    model = AVSRModel(toy_model_config(None), *load_llm(tiny_lm_dir)).train()
    per_utterance = teacher_forced_ce(model, dataset, 1)
    assert not model.training
    for batch_size in (2, 5):
        assert teacher_forced_ce(model, dataset, batch_size) == pytest.approx(per_utterance, rel=1e-5)
