"""bench/gpu_grid.py, the GPU session's prepared script, in its --smoke form on a copy of the CI run: it
runs the pipeline (nothing left to do there), the paper-scale timings on tiny models, and packs tables,
figures, benchmark files and timings into the four files the device tool brings back."""

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
        "gpu_paper_scale.json",
        "gpu_paper_scale.md",
    ]
    summary = json.loads((out / "gpu_grid.json").read_text())
    assert summary["overlay"] == "configs/ci.yaml" and summary["pipeline"]["returncode"] == 0
    # The CI grid trains ASR and AVSR, each as baseline and decorr: four training jobs timed.
    assert summary["seconds_by_rule"]["train"]["jobs"] == 4 and summary["paper_scale_configurations"] == 1
    with tarfile.open(out / "gpu_grid.tar.gz") as tar:
        names = tar.getnames()
    assert "results/tables/wer.csv" in names and "snakemake.log" in names
    assert any(n.startswith("results/figures/") and n.endswith(".png") for n in names)
    assert any(n.startswith("logs/benchmarks/train/") for n in names)
