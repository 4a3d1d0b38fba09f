"""Catalogue, configuration: every bad configuration stops a stage before it writes anything, with a
message naming the file and key and saying how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.reliability.scripts import assert_fails_cleanly, run_script

FIX = r"correct the file named above.*schemas/params\.schema\.yaml"

# (case, overlay text, what the message must name besides the overlay's path)
CASES = [
    ("unknown_key", "train:\n  epoch: 3\n", r"unknown key 'train\.epoch' \(allowed here: .*epochs"),
    ("unknown_section", "trian:\n  epochs: 3\n", r"unknown key 'trian'"),
    ("wrong_type", "decode:\n  beam_size: wide\n", r"key 'decode\.beam_size' = 'wide'"),
    ("out_of_range_rate", "grid:\n  asr_audio_rates: [0]\n", r"key 'grid\.asr_audio_rates\.0' = 0"),
    ("grid_unknown_task", "grid:\n  lipreading_rates: [2]\n", r"unknown key 'grid\.lipreading_rates'"),
    (
        "warm_start_unknown_task",
        "train:\n  warm_start: {asr: [], vsr: [], avsr: [lipreading]}\n",
        r"train\.warm_start\.avsr\.0' = 'lipreading'",
    ),
    ("unknown_method", "grid:\n  methods: [magic]\n", r"key 'grid\.methods\.0' = 'magic'"),
    ("string_boolean", "model:\n  projector_layernorm: 'False'\n", r"key 'model\.projector_layernorm'"),
    ("min_above_max", "corpus:\n  synth:\n    min_words: 9\n    max_words: 4\n", r"corpus\.synth\.min_words"),
    ("invalid_yaml", "train: [unclosed\n", r"not valid YAML"),
    ("top_level_list", "- a\n- b\n", r"top level must be a mapping"),
    (
        "nan_learning_rate",
        "train:\n  lr: {asr: .nan, vsr: 5.0e-4, avsr: 1.0e-3}\n",
        r"'train\.lr\.asr' = nan: not a finite",
    ),
    ("nan_grad_clip", "train:\n  grad_clip: .nan\n", r"'train\.grad_clip' = nan: not a finite"),
    ("infinite_lambda", "decorr:\n  lambda: .inf\n", r"'decorr\.lambda' = inf: not a finite"),
    (
        "float_epochs",
        "train:\n  epochs: {asr: 2.0, vsr: 8, avsr: 8}\n",
        r"'train\.epochs\.asr' = 2\.0: .* not of type 'integer'",
    ),
    ("float_threads", "runtime:\n  threads: 1.0\n", r"'runtime\.threads' = 1\.0: .* not of type 'integer'"),
    (
        "duplicate_key",
        "train:\n  grad_clip: 1.0\n  grad_clip: 5.0\n",
        r"'grad_clip' is given twice .* line 2",
    ),
    (
        "word_boolean",
        "model:\n  projector_layernorm: on\n",
        r"'on' is a boolean in YAML 1\.1 .* write true or false",
    ),
    (
        "window_off_the_encoder_frames",
        "audio_encoder:\n  window_seconds: 10.01\n",
        r"'audio_encoder\.window_seconds' = 10\.01 is not a whole number of Whisper's 0\.02 s .* use 10",
    ),
    (
        "home_relative_root",
        "corpus:\n  root: ~/lrs3\n",
        r"'corpus\.root' = '~/lrs3' starts with '~'.*full path",
    ),
]


def make_corpus_args(tmp_path: Path, *configs: Path) -> list[str | Path]:
    out = tmp_path / "out"
    return [
        "--params",
        REPO / "params.yaml",
        *configs,
        "--workers",
        "1",
        "--out-dir",
        out / "corpus",
        "--card-md",
        out / "card.md",
        "--card-json",
        out / "card.json",
    ]


def corpus_outputs(tmp_path: Path) -> list[Path]:
    return [tmp_path / "out" / name for name in ("corpus", "card.md", "card.json")]


@pytest.mark.slow
@pytest.mark.parametrize(("text", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_overlay(tmp_path: Path, text: str, names: str) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(text)
    result = run_script("make_corpus.py", make_corpus_args(tmp_path, overlay))
    assert_fails_cleanly(result, rf"{overlay}.*{names}|{names}.*{overlay}", FIX, corpus_outputs(tmp_path))


@pytest.mark.slow
def test_overlay_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "configs" / "lrs3.yaml"
    result = run_script("make_corpus.py", make_corpus_args(tmp_path, missing))
    names = rf"{missing}: configuration file does not exist"
    assert_fails_cleanly(result, names, FIX, corpus_outputs(tmp_path))


@pytest.mark.slow
def test_yaml_that_would_run_code_is_refused(tmp_path: Path) -> None:
    """Safe loading only: a python/object tag is a YAML error, and its command never runs."""
    marker = tmp_path / "ran"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"train: !!python/object/apply:os.system ['touch {marker}']\n")
    result = run_script("make_corpus.py", make_corpus_args(tmp_path, overlay))
    assert_fails_cleanly(result, rf"{overlay}: not valid YAML", FIX, corpus_outputs(tmp_path))
    assert not marker.exists()
