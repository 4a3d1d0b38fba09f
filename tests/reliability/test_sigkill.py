"""Atomic outputs under SIGKILL: the corpus, features, training, evaluation and analysis stages are killed at
seeded random moments; after each kill no final output exists unless it is complete and correct, and a
rerun finishes with outputs equal to those of an uninterrupted run.

Each stage runs in a process forked from this one after the heavy imports, so that the kills land in
the stage's own work rather than in Python's start-up; the kill takes the stage's whole process group.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import runpy
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from avsr_sinks.features.store import FeatureStore
from tests.conftest import REPO, usable_list
from tests.data.test_bad_input_stage import tiny_whisper  # noqa: F401 (fixture)

SEED = 20261128
EXPERIMENT = "asr-a16-baseline-s0"
# Sized so that each stage spends a few seconds in its own work on 2 cores, most of it after start-up.
OVERLAY = """
corpus:
  synth: {n_train: 24, n_val: 2, n_test: 12}
model: {projector_hidden: 32, lora_rank: 4}
train:
  epochs: {asr: 12, vsr: 1, avsr: 1}
  max_frames: 40
  checkpoint_every: 10
  average_last: 3
  ctc_weight: 1.0
  ctc_warmup_steps: 5
decode: {beam_size: 4, max_new_tokens: 24}
"""


def _stage(script: str, argv: list[str]) -> None:
    os.setpgrp()  # the kill below then reaches any worker the stage starts
    # A stage starts in a fresh process: forget the accelerate state that tests run earlier in this worker
    # set up (the training stage sets its own precision).
    AcceleratorState._reset_state(reset_partial_state=True)
    sys.argv = [script, *argv]
    runpy.run_path(str(REPO / "workflow_scripts" / script), run_name="__main__")


def start(script: str, argv: list[str]) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=_stage, args=(script, argv))
    process.start()
    return process


def run_to_end(script: str, argv: list[str]) -> float:
    """Run the stage uninterrupted; its duration in seconds."""
    began = time.monotonic()
    process = start(script, argv)
    process.join(600)
    assert process.exitcode == 0, f"{script} failed (exit {process.exitcode})"
    return time.monotonic() - began


def kill_at(script: str, argv: list[str], delay: float) -> bool:
    """Start the stage and SIGKILL it after ``delay`` seconds; whether it was still running."""
    process = start(script, argv)
    process.join(delay)
    if process.exitcode is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.join()
    return True


class Stage:
    """One stage's command, its final outputs, and how to compare them with the uninterrupted run's."""

    def __init__(
        self,
        script: str,
        argv: Callable[[Path], list[str]],
        outputs: Callable[[Path], list[Path]],
        same: Callable[[Path, Path], None],
    ) -> None:
        self.script, self.argv, self.outputs, self.same = script, argv, outputs, same


def same_corpus(got: Path, ref: Path) -> None:
    for split in ("train", "val", "test"):
        assert (got / "corpus/labels" / f"{split}.csv").read_bytes() == (
            ref / "corpus/labels" / f"{split}.csv"
        ).read_bytes()
    files = sorted(p.relative_to(got / "corpus") for p in (got / "corpus").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(ref / "corpus") for p in (ref / "corpus").rglob("*") if p.is_file())
    assert all((got / "corpus" / f).stat().st_size > 0 for f in files)
    assert (
        json.loads((got / "card.json").read_text())["splits"]
        == json.loads((ref / "card.json").read_text())["splits"]
    )


def same_features(got: Path, ref: Path) -> None:
    a, b = FeatureStore(got / "features"), FeatureStore(ref / "features")
    assert a.uids == b.uids and all(torch.equal(a[u], b[u]) for u in a.uids)


def same_checkpoint(got: Path, ref: Path) -> None:
    a, b = load_file(str(got / "ckpt/model.safetensors")), load_file(str(ref / "ckpt/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = pd.read_csv(got / "ckpt/train_log.csv").drop(columns="tokens_per_s")
    pd.testing.assert_frame_equal(log, pd.read_csv(ref / "ckpt/train_log.csv").drop(columns="tokens_per_s"))


def same_analysis(got: Path, ref: Path) -> None:
    assert json.loads((got / "analysis/metrics.json").read_text()) == json.loads(
        (ref / "analysis/metrics.json").read_text()
    )
    with np.load(got / "analysis/arrays.npz") as a, np.load(ref / "analysis/arrays.npz") as b:
        assert a.files == b.files
        for key in a.files:  # NaN marks a per-layer curve with no value for that layer (e.g. layer 0)
            assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key


def same_evaluation(got: Path, ref: Path) -> None:
    assert (
        json.loads((got / "clean.json").read_text())["wer"]
        == json.loads((ref / "clean.json").read_text())["wer"]
    )
    assert (got / "clean.hyp.csv").read_bytes() == (ref / "clean.hyp.csv").read_bytes()


@pytest.fixture(scope="module")
def inputs(
    tiny_whisper: Path,  # noqa: F811
    tiny_lm_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sigkill")
    overlay = root / "tiny.yaml"
    overlay.write_text(OVERLAY + f"llm:\n  path: {tiny_lm_dir}\n")
    return {
        "whisper": tiny_whisper,
        "lm": tiny_lm_dir,
        "overlay": overlay,
        "root": root,
    }


def stages(inputs: dict[str, Path]) -> dict[str, Stage]:
    params = ["--params", str(REPO / "params.yaml"), str(inputs["overlay"]), "--threads", "1"]
    root = inputs["root"]
    corpus = root / "ref-corpus" / "corpus"

    def utterances(split: str) -> str:
        return str(usable_list(corpus, split, root / "lists"))

    def features_argv(split: str) -> Callable[[Path], list[str]]:
        return lambda out: [
            *params, "--modality", "audio", "--corpus-dir", str(corpus),
            "--utterances", utterances(split), "--encoder-dir",
            str(inputs["whisper"]), "--split", split, "--condition", "clean",
            "--out-dir", str(out / "features"),
        ]  # fmt: skip

    # evaluation and analysis read the uninterrupted run's checkpoint on the test features
    def reading_checkpoint() -> list[str]:
        return [
            *params, "--experiment", EXPERIMENT, "--checkpoint", str(root / "ref-train" / "ckpt"),
            "--corpus-dir", str(corpus), "--utterances", utterances("test"),
            f"--features=audio={root / 'ref-test-features' / 'features'}",
        ]  # fmt: skip

    return {
        "corpus": Stage(
            "make_corpus.py",
            lambda out: [
                *params,
                "--workers",
                "1",
                "--out-dir",
                str(out / "corpus"),
                "--card-md",
                str(out / "card.md"),
                "--card-json",
                str(out / "card.json"),
            ],  # fmt: skip
            lambda out: [out / "corpus", out / "card.md", out / "card.json"],
            same_corpus,
        ),
        "features": Stage(
            "extract_features.py", features_argv("train"), lambda out: [out / "features"], same_features
        ),
        "train": Stage(
            "train.py",
            lambda out: [
                *params,
                "--experiment",
                EXPERIMENT,
                "--corpus-dir",
                str(corpus),
                "--utterances",
                utterances("train"),
                f"--features=audio={root / 'ref-features' / 'features'}",
                "--lm-dir",
                str(inputs["lm"]),
                "--out-dir",
                str(out / "ckpt"),
                "--resume-dir",
                str(out / "resume"),
            ],  # fmt: skip
            lambda out: [out / "ckpt"],
            same_checkpoint,
        ),
        "evaluate": Stage(
            "evaluate.py",
            lambda out: [
                *reading_checkpoint(),
                "--condition",
                "clean",
                "--out-json",
                str(out / "clean.json"),
                "--out-csv",
                str(out / "clean.hyp.csv"),
            ],  # fmt: skip
            lambda out: [out / "clean.json", out / "clean.hyp.csv"],
            same_evaluation,
        ),
        "analyze": Stage(
            "analyze.py",
            lambda out: [
                *reading_checkpoint(),
                "--out-dir",
                str(out / "analysis"),
            ],  # fmt: skip
            lambda out: [out / "analysis/metrics.json", out / "analysis/arrays.npz"],
            same_analysis,
        ),
        "test-features": Stage("extract_features.py", features_argv("test"), lambda out: [], same_features),
    }


# Kills per stage: 25 in all.
TRIALS = {"corpus": 5, "features": 5, "train": 7, "evaluate": 5, "analyze": 3}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun(inputs: dict[str, Path]) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the tokenizer's threads do not survive a fork
    root, all_stages = inputs["root"], stages(inputs)
    durations = {}
    for name in ("corpus", "features", "test-features", "train", "evaluate", "analyze"):
        stage = all_stages[name]
        durations[name] = run_to_end(stage.script, stage.argv(root / f"ref-{name}"))
    rng = random.Random(SEED)
    killed, resumable = 0, 0
    for name, trials in TRIALS.items():
        stage, work = all_stages[name], root / f"killed-{name}"
        work.mkdir()
        for _trial in range(trials):
            killed += kill_at(stage.script, stage.argv(work), rng.uniform(0, durations[name]))
            resumable += name == "train" and any((work / "resume").glob("step-*/progress.json"))
            finished = [out.exists() for out in stage.outputs(work)]
            # Each output is renamed into place whole: absent, or complete and correct.
            if all(finished):
                stage.same(work, root / f"ref-{name}")
            for out in stage.outputs(work):
                # What Snakemake does with the outputs of a job it did not see finish.
                shutil.rmtree(out) if out.is_dir() else out.unlink(missing_ok=True)
        run_to_end(stage.script, stage.argv(work))
        stage.same(work, root / f"ref-{name}")
    # The seeded kill times must hit running stages, and some training kills must leave a resume state.
    assert killed >= 15 and resumable >= 2, (killed, resumable, durations)
