"""profiles/slurm on a real single-node SLURM cluster: the ci configuration's ASR experiments run with
every job an sbatch job, and give the same results as the local run of the whole ci configuration."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.cluster.slurm_cluster import slurm_cluster, why_unavailable
from tests.conftest import REPO
from tests.pipeline.workspace import make_workspace, run

# The profile waits 40 s before a job's first status check, sized for a busy cluster; the test's jobs are
# seconds long, and MinJobAge (300 s) stays far above 3 x this delay, so squeue still sees every job.
STATUS_DELAY_S = 3
RUN_LIMIT_S = 1500
# The ASR half of the ci grid: every kind of job (corpus, checks, features, training with and without the
# decorrelation loss, ACT's search, decoding clean and in noise, analysis, tables, figures) at half the jobs.
ASR_ONLY = "grid:\n  avsr_rates: []\n"
OVERLAYS = ["--configfile", "configs/ci.yaml", "configs/asr-only.yaml"]


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    reason = why_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI must run the SLURM test")
        pytest.skip(reason)
    with slurm_cluster() as env:
        yield env


@pytest.fixture(scope="module")
def slurm_run(slurm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    work = make_workspace(tmp_path_factory.mktemp("slurm-run"))
    (work / "configs/asr-only.yaml").write_text(ASR_ONLY)
    planned = run(["snakemake", "-n", *OVERLAYS], work)
    assert planned.returncode == 0, planned.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
        # timeout -k: a status query that never answers would leave Snakemake waiting for ever.
        result = run(
            ["timeout", "-k", "30", str(RUN_LIMIT_S), "snakemake", "--profile", str(REPO / "profiles/slurm")]
            + [
                *OVERLAYS,
                "--slurm-init-seconds-before-status-checks",
                str(STATUS_DELAY_S),
            ],
            work,
            timeout=RUN_LIMIT_S + 60,
        )
    assert result.returncode == 0, result.stderr[-6000:]
    return work, planned.stdout + planned.stderr, result.stderr


@pytest.mark.slow
def test_every_job_is_an_sbatch_job(slurm_run: tuple[Path, str, str]) -> None:
    work, plan, log = slurm_run
    planned = int(re.search(r"^total\s+(\d+)", plan, re.MULTILINE).group(1))
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    # `rule all` only collects the targets; Snakemake runs it in the main process, as any local rule.
    assert len(submitted) == planned - 1 and len(set(submitted)) == len(submitted)
    job_logs = sorted((work / "logs/slurm").rglob("*.log"))
    assert sorted(p.stem for p in job_logs) == sorted(submitted), "one SLURM log per job, named by its id"
    train_logs = [p for p in job_logs if p.relative_to(work / "logs/slurm").parts[0] == "rule_train"]
    assert len(train_logs) == 2  # ASR, baseline and decorr


@pytest.mark.slow
def test_two_runs_from_scratch_give_identical_tables(
    slurm_run: tuple[Path, str, str], ci_run: tuple[Path, str]
) -> None:
    """Determinism: the ASR experiments run from scratch twice (through SLURM with 4 corpus workers, and
    locally with 2, beside the AVSR ones) get the same corpus bytes, features and training, so identical
    rows of the WER and sink tables and identical per-experiment sink metrics."""
    on_slurm, local = slurm_run[0], ci_run[0]
    for table in ("results/tables/wer.csv", "results/tables/sinks.csv"):
        ours, theirs = pd.read_csv(on_slurm / table), pd.read_csv(local / table)
        theirs = theirs[theirs["experiment"].str.startswith("asr-")].reset_index(drop=True)
        assert len(ours) and set(ours["experiment"]) == set(theirs["experiment"])
        pd.testing.assert_frame_equal(ours, theirs, obj=table)
    metrics = sorted(p.relative_to(on_slurm) for p in (on_slurm / "results/analysis").glob("*/metrics.json"))
    assert len(metrics) == 3  # ASR x baseline, decorr and ACT
    for path in metrics:
        assert json.loads((on_slurm / path).read_text()) == json.loads((local / path).read_text()), path
