"""A training job killed with SIGKILL under Snakemake or DVC resumes from its last saved state when the
pipeline is rerun (Snakemake: ``--unlock``, then ``--rerun-incomplete``; DVC: ``dvc repro``), and ends with
the weights of the uninterrupted ci run."""

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
import yaml
from safetensors.torch import load_file

from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow import paths
from tests.conftest import REPO
from tests.pipeline.workspace import git_dvc_repo, run, snakemake

EXPERIMENT = "asr-a16-baseline-s0"
TARGET = f"results/checkpoints/{EXPERIMENT}"
CI = ["--cores", "1", "--configfile", "configs/ci.yaml"]
SAVE_EVERY = load_params([REPO / "params.yaml", REPO / "configs/ci.yaml"])["train"]["checkpoint_every"]


def _saved_steps(resume: Path) -> list[int]:
    """The steps of the complete resume states (older saves lose their progress.json)."""
    return sorted(int(p.parent.name.removeprefix("step-")) for p in resume.glob("step-*/progress.json"))


def _second_save_done(resume: Path) -> bool:
    steps = _saved_steps(resume)
    return bool(steps) and steps[-1] >= 2 * SAVE_EVERY


def _kill_after_second_save(command: list[str], work: Path) -> int:
    """Start the pipeline tool on the training target, SIGKILL its whole process group once the job has
    saved its state twice; the last saved step."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    with (work / "killed_run.log").open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    resume = work / paths.resume_dir(EXPERIMENT)
    deadline = time.monotonic() + 300
    while not _second_save_done(resume) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    running = process.poll() is None
    if running:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert running, (
        f"{command[0]} ended (exit {process.returncode}) before the training job saved twice: "
        + (work / "killed_run.log").read_text()[-2000:]
    )
    assert _second_save_done(resume), "no second resume save after 300 s"
    return _saved_steps(resume)[-1]


@pytest.mark.slow
def test_killed_training_resumes_under_snakemake(ci_run: tuple[Path, str], tmp_path: Path) -> None:
    reference = ci_run[0]
    work = tmp_path / "work"
    shutil.copytree(reference, work, symlinks=True)
    shutil.rmtree(work / TARGET)

    # the target first: --configfile takes every word after it
    saved = _kill_after_second_save(["snakemake", TARGET, *CI], work)
    assert not (work / TARGET).exists(), "a killed training job left a checkpoint folder behind"

    # A hard kill leaves Snakemake's lock behind: the next run says so and what to do (README, When
    # things go wrong), and runs after --unlock.
    locked = snakemake([TARGET, *CI, "--rerun-incomplete"], work)
    assert locked.returncode != 0 and "--unlock" in locked.stderr, locked.stderr[-3000:]
    assert snakemake([*CI, "--unlock"], work).returncode == 0
    result = snakemake([TARGET, *CI, "--rerun-incomplete"], work)
    assert result.returncode == 0, result.stderr[-3000:]
    train_log = (work / f"logs/train/{EXPERIMENT}.log").read_text()
    assert f"from step {saved} of" in train_log, train_log[-2000:]
    assert not (work / paths.resume_dir(EXPERIMENT)).exists(), "resume state left after the checkpoint"

    _assert_same_training(work, reference)


def _forget_committed_output(work: Path, stage: str) -> None:
    """The stage's output gone from the workspace, DVC's cache and its run cache, as if never committed:
    DVC would otherwise check the recorded output out instead of running the stage."""
    (out,) = yaml.safe_load((work / "dvc.lock").read_text())["stages"][stage]["outs"]
    digest = out["md5"]
    shutil.rmtree(work / out["path"])
    (work / ".dvc/cache/files/md5" / digest[:2] / digest[2:]).unlink()
    shutil.rmtree(work / ".dvc/cache/runs")


def _assert_same_training(work: Path, reference: Path) -> None:
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


@pytest.mark.slow
def test_killed_training_resumes_under_dvc_repro(ci_run: tuple[Path, str], tmp_path: Path) -> None:
    reference = ci_run[0]
    work = git_dvc_repo(reference, tmp_path)
    stage = f"train_asr_baseline@{EXPERIMENT}"

    # A checkpoint that was never committed (`dvc repro --force` would rerun the upstream stages too): the
    # stage has changed, its upstream stages have not, so it alone runs.
    _forget_committed_output(work, stage)
    saved = _kill_after_second_save(["dvc", "repro", stage], work)
    assert not (work / TARGET).exists(), "a killed training stage left a checkpoint folder behind"

    # DVC's lock names the killed process, which no longer exists, so the rerun needs no unlocking.
    result = run(["dvc", "repro", stage], work)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"from step {saved} of" in output, output[-2000:]
    assert not (work / paths.resume_dir(EXPERIMENT)).exists(), "resume state left after the checkpoint"
    _assert_same_training(work, reference)
    status = run(["dvc", "status", stage], work)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
