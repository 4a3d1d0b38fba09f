"""dvc.yaml is generated from the same grid as the Snakefile and declares the same outputs."""

from __future__ import annotations

from dvc.repo import Repo

from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow.dvc_yaml import render
from tests.conftest import REPO
from tests.pipeline.workspace import snakemake


def test_committed_dvc_yaml_is_generated_from_params() -> None:
    expected = render(load_params([REPO / "params.yaml"]))
    assert (REPO / "dvc.yaml").read_text() == expected, "dvc.yaml is stale: run `make dvc.yaml`"


def test_dvc_and_snakemake_declare_the_same_outputs() -> None:
    with Repo(str(REPO)) as repo:
        dvc_outs = {str(out.def_path) for stage in repo.index.stages for out in stage.outs}
        dvc_outs |= {str(m.def_path) for stage in repo.index.stages for m in stage.metrics}
    result = snakemake(["--summary", "--cores", "1"], REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    snakemake_outs = {line.split("\t")[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert dvc_outs == snakemake_outs
