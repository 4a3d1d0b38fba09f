"""bench/gpu_grid.py, the GPU session's prepared script, in its --smoke form on a copy of the CI run: it
runs the pipeline (nothing left to do there), the paper-scale timings on tiny models, and packs tables,
figures, benchmark files, training logs and timings into the five files the device tool brings back; a
deadline stops the pipeline and still packs what finished."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.pipeline.workspace import run


@pytest.mark.slow
def test_smoke_run_brings_back_tables_figures_and_timings(ci_run: tuple[Path, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(ci_run[0], work, symlinks=True)
    out = tmp_path / "out"
    script = REPO / "bench" / "gpu_grid.py"
    result = run(
        [sys.executable, str(script), "--smoke", "--root", str(work), "--out", str(out), "--cores", "2"], REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_grid.json",
        "gpu_grid.tar.gz",
        "gpu_grid_figures.tar.gz",
        "gpu_paper_scale.json",
        "gpu_paper_scale.md",
    ]
    summary = json.loads((out / "gpu_grid.json").read_text())
    assert summary["overlay"] == "configs/ci.yaml" and summary["pipeline"]["returncode"] == 0
    assert summary["pipeline"]["stopped_at_deadline"] is False and summary["paper_scale_returncode"] == 0
    # The CI grid trains ASR and AVSR, each as baseline and decorr: four training jobs timed.
    assert summary["seconds_by_rule"]["train"]["jobs"] == 4 and summary["paper_scale_configurations"] == 1
    with tarfile.open(out / "gpu_grid.tar.gz") as tar:
        names = tar.getnames()
    assert "results/tables/wer.csv" in names and "snakemake.log" in names and "gpu_paper_scale.log" in names
    assert any(n.startswith("logs/benchmarks/train/") for n in names)
    assert "results/checkpoints/asr-a16-baseline-s0/train_log.csv" in names
    assert not any(n.endswith(".safetensors") for n in names)
    with tarfile.open(out / "gpu_grid_figures.tar.gz") as tar:
        assert any(n.startswith("results/figures/") and n.endswith(".png") for n in tar.getnames())


@pytest.mark.slow
def test_the_deadline_stops_the_pipeline_and_still_packs_what_finished(
    ci_run: tuple[Path, str], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(ci_run[0], work, symlinks=True)
    out = tmp_path / "out"
    script = REPO / "bench" / "gpu_grid.py"
    # 0.3 s: Snakemake takes seconds to build its plan, so the deadline finds it running.
    command = [
        "--smoke",
        "--no-paper-scale",
        "--deadline-min",
        "0.005",
        "--root",
        str(work),
        "--out",
        str(out),
    ]
    result = run([sys.executable, str(script), *command, "--cores", "2"], REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "gpu_grid.json").read_text())
    assert summary["pipeline"]["stopped_at_deadline"] is True and summary["pipeline"]["returncode"] != 0
    assert summary["pipeline"]["wall_s"] < 30 and summary["paper_scale_returncode"] is None
    with tarfile.open(out / "gpu_grid.tar.gz") as tar:
        assert "results/tables/wer.csv" in tar.getnames()
