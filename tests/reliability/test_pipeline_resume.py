"""A training job killed with SIGKILL under Snakemake resumes from its last saved state when the pipeline
is rerun with ``--rerun-incomplete``, and ends with the weights of the uninterrupted ci run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from avsr_sinks import pipeline
from tests.pipeline.workspace import snakemake

EXPERIMENT = "asr-a16-baseline-s0"
TARGET = f"results/checkpoints/{EXPERIMENT}"
CI = ["--cores", "1", "--configfile", "configs/ci.yaml"]


def _saved_steps(resume: Path) -> list[int]:
    return sorted(int(p.parent.name.removeprefix("step-")) for p in resume.glob("step-*/progress.json"))


def _kill_after_second_save(work: Path) -> int:
    """Start Snakemake on the training target, SIGKILL its whole process group once the job has saved its
    state twice; the last saved step."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        ["snakemake", *CI, TARGET],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    resume = work / pipeline.resume_dir(EXPERIMENT)
    deadline = time.monotonic() + 300
    try:
        while len(_saved_steps(resume)) < 2:
            assert process.poll() is None, "the training job ended before it could be killed"
            assert time.monotonic() < deadline, "no resume state after 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return _saved_steps(resume)[-1]


@pytest.mark.slow
def test_killed_training_resumes_under_snakemake(ci_run: tuple[Path, str], tmp_path: Path) -> None:
    reference = ci_run[0]
    work = tmp_path / "work"
    shutil.copytree(reference, work, symlinks=True)
    shutil.rmtree(work / TARGET)

    saved = _kill_after_second_save(work)
    assert not (work / TARGET).exists(), "a killed training job left a checkpoint folder behind"

    result = snakemake([*CI, "--rerun-incomplete", TARGET], work)
    assert result.returncode == 0, result.stderr[-3000:]
    train_log = (work / f"logs/train/{EXPERIMENT}.log").read_text()
    assert f"from step {saved} of" in train_log, train_log[-2000:]
    assert not (work / pipeline.resume_dir(EXPERIMENT)).exists(), "resume state left after the checkpoint"

    got, want = (
        load_file(str(work / TARGET / "model.safetensors")),
        load_file(str(reference / TARGET / "model.safetensors")),
    )
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    steps = [
        pd.read_csv(root / TARGET / "train_log.csv").drop(columns="tokens_per_s")
        for root in (work, reference)
    ]
    pd.testing.assert_frame_equal(*steps)
