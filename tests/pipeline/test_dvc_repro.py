"""DVC over a Snakemake run: `dvc commit` records the ci run's outputs, then `dvc exp run -S
decorr.lambda=...` reruns exactly the decorrelation experiments' chain and the tables above it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.pipeline.workspace import git_dvc_repo, run


@pytest.mark.slow
def test_decorr_lambda_reruns_only_the_decorr_chain(ci_run: tuple[Path, str], tmp_path: Path) -> None:
    work = git_dvc_repo(ci_run[0], tmp_path)
    status = run(["dvc", "status", "-q"], work)
    assert status.returncode == 0, f"the committed run is not up to date:\n{status.stdout}{status.stderr}"
    tables = ("results/tables/wer.csv", "results/tables/sinks.csv")
    before = {table: (work / table).read_text() for table in tables}

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
    # DVC skips a stage whose inputs came out byte-identical.
    changed = {table for table in tables if (work / table).read_text() != before[table]}
    if "results/tables/wer.csv" in changed:
        expected.add("summary_tables")
    if changed:
        expected |= {"claims_table", "tables_page"}
    assert ran == expected
    assert yaml.safe_load((work / "params.yaml").read_text())["decorr"]["lambda"] == 2.5
    metrics = run(["dvc", "metrics", "show"], work)
    assert metrics.returncode == 0 and "results/eval/asr-a16-decorr-s0/clean.json" in metrics.stdout
