"""The ci configuration run once per session through Snakemake: the workflow, report and DVC tests read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.workspace import make_workspace, snakemake


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workspace after ``snakemake --cores 2 --configfile configs/ci.yaml``; tests must not change it
    (copy it first), except for the report, which only adds results/report.html."""
    work = make_workspace(tmp_path_factory.mktemp("ci-run"))
    result = snakemake(["--cores", "2", "--configfile", "configs/ci.yaml"], work, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    return work, result.stderr
