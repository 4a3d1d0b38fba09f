"""Run the workflow in a scratch copy of the repository, so tests never touch the real results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def make_workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
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
