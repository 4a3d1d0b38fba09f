"""The ci configuration run once with the local executor: the reference the cluster tests compare to."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.workspace import make_workspace, snakemake


@pytest.fixture(scope="session")
def ci_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_workspace(tmp_path_factory.mktemp("ci-reference"))
    result = snakemake(["--cores", "2", "--configfile", "configs/ci.yaml"], work, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return work
