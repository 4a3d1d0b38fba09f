"""profiles/slurm on a real single-node SLURM cluster: the ci configuration's ASR experiments run from the
ci run's corpus, models and training features with every job an sbatch job, and give the same results as
the local run of the whole ci configuration."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow import paths
from tests.cluster.slurm_cluster import slurm_cluster, why_unavailable
from tests.conftest import REPO
from tests.pipeline.workspace import run

# The profile waits 40 s before a job's first status check, sized for a busy cluster; the test's jobs are
# seconds long, and MinJobAge (300 s) stays far above 3 x this delay, so squeue still sees every job.
STATUS_DELAY_S = 3
RUN_LIMIT_S = 1500
CI = ["--configfile", "configs/ci.yaml"]
# Every kind of job that reads the corpus or a model runs through SLURM: the test split's checks and
# features, training with and without the decorrelation loss, ACT's search, decoding clean and in noise,
# analysis, tables and figures. Generating the corpus and preparing the models stay with the local run:
# they are the slowest jobs of the ci run, and under SLURM they would show nothing the other jobs do not.
SLURM_RULES = {
    "check_corpus_text",
    "check_corpus_media",
    "corpus_intelligibility",
    "audio_features",
    "train",
    "act_heads",
    "evaluate",
    "analyze",
    "wer_tables",
    "sink_tables",
    "summary_tables",
    "claims_table",
    "figures",
    "tables_page",
    "all",
}


def _asr_half_without_its_test_side(ci_work: Path, work: Path) -> None:
    """A copy of the ci run whose configuration keeps only the ASR experiments, with their outputs, the
    tables and figures, and the test split's checks and features removed."""
    shutil.copytree(ci_work, work, symlinks=True, ignore=shutil.ignore_patterns("logs"))
    # Edited in place rather than overlaid: another config file on the command line would change every
    # job's params and so rerun the corpus and the models too.
    overlay = work / "configs/ci.yaml"
    config = yaml.safe_load(overlay.read_text())
    overlay.write_text(yaml.safe_dump({**config, "grid": {**config["grid"], "avsr_rates": []}}))
    params = load_params([work / "params.yaml", overlay])
    test_side = [
        paths.usable_list(params, "test"),
        paths.media_checked_list(params, "test"),
        paths.media_skip_report(params, "test"),
        paths.skip_report(params, "test"),
        paths.check_card(params, "test"),
        *(paths.feature_dir(params, "audio", "test", c) for c in params["evaluate"]["conditions"]),
    ]
    test_side += [str(p.relative_to(work)) for p in work.glob("results/*/asr-*")]
    test_side += [paths.FIGURES_DIR, str(Path(paths.WER_TABLES[0]).parent)]
    for relative in test_side:
        target = work / relative
        assert target.exists(), f"{relative}: not in the ci run"
        shutil.rmtree(target) if target.is_dir() else target.unlink()


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
def slurm_run(
    slurm_env: dict[str, str], ci_run: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    work = tmp_path_factory.mktemp("slurm-run") / "work"
    _asr_half_without_its_test_side(ci_run[0], work)
    planned = run(["snakemake", "-n", *CI], work)
    assert planned.returncode == 0, planned.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
        # timeout -k: a status query that never answers would leave Snakemake waiting for ever.
        result = run(
            ["timeout", "-k", "30", str(RUN_LIMIT_S), "snakemake", "--profile", str(REPO / "profiles/slurm")]
            + [*CI, "--slurm-init-seconds-before-status-checks", str(STATUS_DELAY_S)],
            work,
            timeout=RUN_LIMIT_S + 60,
        )
    assert result.returncode == 0, result.stderr[-6000:]
    return work, planned.stdout + planned.stderr, result.stderr


@pytest.mark.slow
def test_every_job_is_an_sbatch_job(slurm_run: tuple[Path, str, str]) -> None:
    work, plan, log = slurm_run
    planned = int(re.search(r"^total\s+(\d+)", plan, re.MULTILINE).group(1))
    assert set(re.findall(r"^rule (\w+):", plan, re.MULTILINE)) == SLURM_RULES
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    # `rule all` only collects the targets; Snakemake runs it in the main process, as any local rule.
    assert len(submitted) == planned - 1 and len(set(submitted)) == len(submitted)
    job_logs = sorted((work / "logs/slurm").rglob("*.log"))
    assert sorted(p.stem for p in job_logs) == sorted(submitted), "one SLURM log per job, named by its id"
    train_logs = [p for p in job_logs if p.relative_to(work / "logs/slurm").parts[0] == "rule_train"]
    assert len(train_logs) == 2  # ASR, baseline and decorr


@pytest.mark.slow
def test_two_runs_give_identical_tables(slurm_run: tuple[Path, str, str], ci_run: tuple[Path, str]) -> None:
    """Determinism: the ASR experiments trained, decoded and analysed twice (through SLURM, and locally beside
    the AVSR ones) from the same corpus, with the test features extracted twice, give identical rows of the
    WER and sink tables and identical per-experiment sink metrics."""
    on_slurm, local = slurm_run[0], ci_run[0]
    for table in ("results/tables/wer.csv", "results/tables/sinks.csv"):
        ours, theirs = pd.read_csv(on_slurm / table), pd.read_csv(local / table)
        theirs = theirs[theirs["experiment"].str.startswith("asr-")].reset_index(drop=True)
        assert len(ours) and set(ours["experiment"]) == set(theirs["experiment"])
        pd.testing.assert_frame_equal(ours, theirs, obj=table)
    analyses = (on_slurm / "results/analysis").glob("asr-*/metrics.json")
    metrics = sorted(p.relative_to(on_slurm) for p in analyses)
    assert len(metrics) == 3  # ASR x baseline, decorr and ACT
    for path in metrics:
        assert json.loads((on_slurm / path).read_text()) == json.loads((local / path).read_text()), path
