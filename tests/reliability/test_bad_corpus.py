"""Catalogue, corpus: damage that reaches the features stage (a fresh process, as the pipeline runs it)
stops it with a message naming the file and what to do, and leaves no cache folder behind. The same
damage is checked reader by reader in tests/data/test_bad_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.data.conftest import DATASET, _pristine_corpus, corpus  # noqa: F401 (fixtures)
from tests.data.test_bad_input import append_rows
from tests.data.test_bad_input_stage import (
    damage_corrupt_audio,
    damage_escaping_path,
    damage_malformed_row,
    damage_missing,
    damage_non_utf8,
    tiny_whisper,  # noqa: F401 (fixture)
)
from tests.reliability.scripts import assert_fails_cleanly, run_script

FIX = r"repair or remove what is named above, or set corpus\.on_bad_sample: skip"


def damage_missing_labels(root: Path) -> str:
    (root / "labels" / "train.csv").unlink()
    return r"train\.csv: label file is missing"


def damage_empty_transcript(root: Path) -> str:
    append_rows(root, "train", f"{DATASET},train/spk0/train_000.mp4,25,1,".encode())
    return r"train\.csv, line 6"


def damage_truncated_audio(root: Path) -> str:
    path = root / DATASET / "train/spk3/train_003.wav"
    path.write_bytes(path.read_bytes()[:40])
    return r"train_003\.wav"


DAMAGES = [
    damage_missing,
    damage_corrupt_audio,
    damage_truncated_audio,
    damage_malformed_row,
    damage_escaping_path,
    damage_non_utf8,
    damage_empty_transcript,
    damage_missing_labels,
]


def extract_audio_features(corpus_dir: Path, encoder: Path, out: Path, *overlays: Path):
    return run_script(
        "extract_features.py",
        [
            "--params",
            REPO / "params.yaml",
            *overlays,
            "--threads",
            "1",
            "--modality",
            "audio",
            "--corpus-dir",
            corpus_dir,
            "--encoder-dir",
            encoder,
            "--split",
            "train",
            "--condition",
            "clean",
            "--out-dir",
            out,
        ],
    )


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.removeprefix("damage_"))
def test_damaged_corpus_stops_features_stage(
    corpus: Path,  # noqa: F811
    tiny_whisper: Path,  # noqa: F811
    tmp_path: Path,
    damage,
) -> None:
    names = damage(corpus)
    out = tmp_path / "cache" / "train-clean"
    result = extract_audio_features(corpus, tiny_whisper, out)
    assert_fails_cleanly(result, names, FIX, [out])
