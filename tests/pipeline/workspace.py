"""Run the workflow in a scratch copy of the repository, so tests never touch the real results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow.dvc_yaml import render
from tests.conftest import REPO

WORKFLOW_FILES = (
    "Snakefile",
    "rules",
    "workflow_scripts",
    "schemas",
    "params.yaml",
    "configs",
    "dvc.yaml",
    "references",
)


# What `make setup` fetched (the LLM's wheel): shared read-only by every workspace, as installed packages are.
DOWNLOADS = "data/downloads"


def make_workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / DOWNLOADS).parent.mkdir(exist_ok=True)
    (root / DOWNLOADS).symlink_to((REPO / DOWNLOADS).resolve(), target_is_directory=True)
    return root


def run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run a command with the test interpreter's environment first on PATH (snakemake, python, dvc)."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def snakemake(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return run(["snakemake", *args], cwd, timeout)


def git_dvc_repo(ci_work: Path, root: Path) -> Path:
    """A git + DVC repository holding a copy of the ci run, with the ci overlay merged into params.yaml
    (DVC reads params.yaml only), dvc.yaml generated from it and every output recorded by `dvc commit`."""
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
