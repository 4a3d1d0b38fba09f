"""DVC over a Snakemake run: `dvc commit` records the ci run's outputs, then `dvc exp run -S
decorr.lambda=...` reruns exactly the decorrelation experiments' chain and the tables above it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from avsr_sinks.config import load_params
from avsr_sinks.dvcgen import render
from tests.conftest import REPO
from tests.pipeline.workspace import run


def _git_dvc_repo(ci_work: Path, root: Path) -> Path:
    """A git + DVC repository holding a copy of the ci run, with the ci overlay merged into params.yaml
    (DVC reads params.yaml only) and dvc.yaml generated from it."""
    work = root / "repo"
    shutil.copytree(ci_work, work, symlinks=True, ignore=shutil.ignore_patterns(".snakemake", "logs"))
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = load_params([work / "params.yaml", work / "configs/ci.yaml"])
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc.yaml").write_text(render(params))
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "commit", "--force", "-q"],  # `make dvc-commit`: record what Snakemake built
        ["git", "add", "-A"],
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "ci run"],
    ):
        result = run(command, work)
        assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return work


@pytest.mark.slow
def test_decorr_lambda_reruns_only_the_decorr_chain(ci_run: tuple[Path, str], tmp_path: Path) -> None:
    work = _git_dvc_repo(ci_run[0], tmp_path)
    status = run(["dvc", "status", "-q"], work)
    assert status.returncode == 0, f"the committed run is not up to date:\n{status.stdout}{status.stderr}"
    wer_before = (work / "results/tables/wer.csv").read_text()

    result = run(["dvc", "exp", "run", "-S", "decorr.lambda=2.5"], work, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout + result.stderr))

    decorr = {"asr": "asr-a16-decorr-s0", "avsr": "avsr-a16v5-decorr-s0"}
    settings = {"asr": "asr-a16", "avsr": "avsr-a16v5"}
    expected = {f"train_{task}_decorr@{name}" for task, name in decorr.items()}
    expected |= {f"analyze_{task}_decorr@{settings[task]}-0" for task in decorr}
    expected |= {
        f"evaluate_{task}_decorr@{settings[task]}-0-{condition}"
        for task in decorr
        for condition in ("clean", "babble0db")
    }
    expected |= {"wer_tables", "sink_tables", "figures"}
    if (work / "results/tables/wer.csv").read_text() != wer_before:
        expected.add("summary_tables")  # DVC skips a stage whose inputs came out byte-identical
    assert ran == expected
    assert yaml.safe_load((work / "params.yaml").read_text())["decorr"]["lambda"] == 2.5
    metrics = run(["dvc", "metrics", "show"], work)
    assert metrics.returncode == 0 and "results/eval/asr-a16-decorr-s0/clean.json" in metrics.stdout
