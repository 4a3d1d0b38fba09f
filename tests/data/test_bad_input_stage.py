"""Skip mode through the stages: the corpus check leaves a bad sample out, and the features stage caches
exactly the check's list. (Error mode, case by case: tests/reliability/test_bad_corpus.py.)"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from transformers import WhisperConfig, WhisperModel

from avsr_sinks.data.validation import read_skip_report, read_usable
from avsr_sinks.features.store import FeatureStore
from tests.conftest import REPO
from tests.data.conftest import DATASET
from tests.data.test_bad_input import append_rows


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Whisper of the real class, small enough to run in milliseconds."""
    config = WhisperConfig(
        vocab_size=64,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=2,
    )
    folder = tmp_path_factory.mktemp("whisper") / "tiny-whisper"
    WhisperModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def run_script_in_process(script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = REPO / "workflow_scripts" / script
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    runpy.run_path(str(path), run_name="__main__")


def test_skip_mode_leaves_a_bad_sample_out_of_the_features_stage_too(
    corpus: Path, tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The corpus check stage decides in skip mode; the features stage caches exactly its usable list."""
    append_rows(corpus, "train", f"{DATASET},train/spk0/x.mp4,notanumber,1,hello".encode())
    (corpus / DATASET / "train/spk1/train_001.wav").write_bytes(b"not audio")
    overlay = tmp_path / "skip.yaml"
    overlay.write_text("corpus:\n  on_bad_sample: skip\n")
    params = ["--params", str(REPO / "params.yaml"), str(overlay), "--threads", "1"]
    usable, skipped = tmp_path / "train.media.csv", tmp_path / "train.media-skipped.csv"
    run_script_in_process(
        "check_corpus_media.py",
        [*params, "--corpus-dir", str(corpus), "--split", "train", "--out-usable", str(usable)]
        + ["--out-skipped", str(skipped)],
        monkeypatch,
    )
    assert [(e.label_line, e.uid) for e in read_skip_report(skipped)] == [
        (3, "tiny/train/spk1/train_001"),
        (6, None),
    ]
    out = tmp_path / "cache" / "train-clean"
    run_script_in_process(
        "extract_features.py",
        [*params, "--modality", "audio", "--corpus-dir", str(corpus), "--utterances", str(usable)]
        + [
            "--encoder-dir",
            str(tiny_whisper),
            "--split",
            "train",
            "--condition",
            "clean",
            "--out-dir",
            str(out),
        ],
        monkeypatch,
    )
    store = FeatureStore(out)
    assert store.uids == [u.uid for u in read_usable(usable, corpus)]
    assert len(store.uids) == 3 and "tiny/train/spk1/train_001" not in store.uids
