"""A training run killed with SIGKILL continues from its last resume state and ends with exactly the
weights of an uninterrupted run (CPU, same seed), including the average of its last checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO


def run_job(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.train_job", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    result = run_job(root / "data", tiny_lm_dir, root / "ref", root / "ref-resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (root / "ref-resume").exists(), "resume state must be removed after a finished run"
    return root / "data", root / "ref"


@pytest.mark.slow
@pytest.mark.parametrize("mid_write", [False, True], ids=["after-save", "during-save"])
def test_killed_run_resumes_to_identical_weights(
    uninterrupted: tuple[Path, Path], tiny_lm_dir: Path, tmp_path: Path, mid_write: bool
) -> None:
    data, reference = uninterrupted
    out, resume = tmp_path / "ckpt", tmp_path / "resume"
    killed = run_job(data, tiny_lm_dir, out, resume, "--die-after-save", "2", *(["--mid-write"] * mid_write))
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed run must leave no checkpoint that looks finished"
    # A kill inside a save leaves that save's hidden temporary folder; the complete one before it stays.
    # The job averages its last 3 checkpoints, so the save before the newest keeps its weights only.
    saves = sorted(p.name for p in resume.iterdir() if not p.name.startswith("."))
    assert saves == (["step-00000004"] if mid_write else ["step-00000004", "step-00000008"])
    if not mid_write:
        assert [p.name for p in (resume / "step-00000004").iterdir()] == ["trainable.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name not in ("resume",)]
    resumed = run_job(data, tiny_lm_dir, out, resume)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected_step = 4 if mid_write else 8
    assert f"from step {expected_step} of" in resumed.stderr
    assert not resume.exists(), "resume state must be removed once the checkpoint is written"
    ref, got = load_file(str(reference / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert ref.keys() == got.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0)
    summaries = [json.loads((d / "experiment.json").read_text())["summary"] for d in (reference, out)]
    assert summaries[0]["averaged_steps"] == summaries[1]["averaged_steps"] == [20, 24, 27]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "train_log.csv").drop(columns="tokens_per_s"),
        pd.read_csv(reference / "train_log.csv").drop(columns="tokens_per_s"),
    )


@pytest.mark.slow
def test_run_killed_in_a_later_epoch_resumes_to_identical_weights(
    uninterrupted: tuple[Path, Path], tiny_lm_dir: Path, tmp_path: Path
) -> None:
    """Resumed inside the second epoch, the run must draw that epoch's batch order, not the first's."""
    data, reference = uninterrupted
    out, resume = tmp_path / "ckpt", tmp_path / "resume"
    killed = run_job(data, tiny_lm_dir, out, resume, "--die-after-save", "3")
    assert killed.returncode == -signal.SIGKILL
    resumed = run_job(data, tiny_lm_dir, out, resume)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from step 12 of" in resumed.stderr
    first_epoch = pd.read_csv(reference / "train_log.csv").query("epoch == 0")
    assert len(first_epoch) < 12, "step 12 must lie past the first epoch"
    ref, got = load_file(str(reference / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0)
