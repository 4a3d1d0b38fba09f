"""Bad input reaching a stage: the features stage exits with a message naming the file, and leaves no
cache folder (nor a temporary one) behind; with on_bad_sample=skip it caches the good utterances only."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from transformers import WhisperConfig, WhisperModel

from avsr_sinks.features import FeatureStore
from tests.conftest import REPO
from tests.data.conftest import DATASET
from tests.data.test_bad_input import append_rows

SCRIPT = REPO / "workflow_scripts" / "extract_features.py"


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


def run_features(
    corpus: Path, encoder: Path, out: Path, monkeypatch: pytest.MonkeyPatch, overlay: Path | None = None
) -> None:
    params = [str(REPO / "params.yaml"), *([str(overlay)] if overlay else [])]
    argv = [
        str(SCRIPT),
        "--params",
        *params,
        "--threads",
        "1",
        "--modality",
        "audio",
        "--corpus-dir",
        str(corpus),
        "--encoder-dir",
        str(encoder),
        "--split",
        "train",
        "--condition",
        "clean",
        "--out-dir",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")


def damage_missing(root: Path) -> str:
    (root / DATASET / "train/spk1/train_001.mp4").unlink()
    return r"train_001\.mp4 is missing"


def damage_corrupt_audio(root: Path) -> str:
    (root / DATASET / "train/spk2/train_002.wav").write_bytes(b"RIFF garbage, not audio")
    return r"train_002\.wav"


def damage_malformed_row(root: Path) -> str:
    append_rows(root, "train", f"{DATASET},train/spk0/x.mp4,notanumber,1,hello".encode())
    return r"train\.csv, line 6"


def damage_escaping_path(root: Path) -> str:
    append_rows(root, "train", f"{DATASET},../../outside.mp4,25,1,hello".encode())
    return r"train\.csv, line 6"


def damage_non_utf8(root: Path) -> str:
    append_rows(root, "train", f"{DATASET},train/spk0/train_000.mp4,25,1,".encode() + b"caf\xe9")
    return r"train\.csv"


@pytest.mark.parametrize(
    "damage",
    [damage_missing, damage_corrupt_audio, damage_malformed_row, damage_escaping_path, damage_non_utf8],
    ids=lambda f: f.__name__.removeprefix("damage_"),
)
def test_features_stage_fails_cleanly(
    corpus: Path, tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage
) -> None:
    expected = damage(corpus)
    out = tmp_path / "cache" / "train-clean"
    with pytest.raises(SystemExit, match=expected):
        run_features(corpus, tiny_whisper, out, monkeypatch)
    assert not out.exists()
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_skip_mode_caches_only_good_utterances(
    corpus: Path, tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damage_malformed_row(corpus)
    overlay = tmp_path / "skip.yaml"
    overlay.write_text("corpus:\n  on_bad_sample: skip\n")
    out = tmp_path / "cache" / "train-clean"
    run_features(corpus, tiny_whisper, out, monkeypatch, overlay)
    store = FeatureStore(out)
    assert len(store.uids) == 4 and all(store[uid].shape[1] == 16 for uid in store.uids)
