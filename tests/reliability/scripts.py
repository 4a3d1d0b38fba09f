"""Run a workflow script as the pipeline does (a fresh process) and check how it fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.conftest import REPO


def run_script(
    script: str, args: Sequence[str | Path], preexec_fn: Callable[[], None] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python workflow_scripts/<script> ARGS`` from the repository root, one torch thread."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "workflow_scripts" / script), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def assert_fails_cleanly(
    result: subprocess.CompletedProcess[str], names: str, remedy: str, outputs: Sequence[Path]
) -> None:
    """The three promises of a bad input: a non-zero exit; a message that names the file or key (regex
    ``names``) and says what to do (regex ``remedy``); and no output, finished or temporary, left behind."""
    assert result.returncode != 0, f"exit status 0 on bad input:\n{result.stderr[-3000:]}"
    assert re.search(names, result.stderr), f"{names!r} not in:\n{result.stderr[-3000:]}"
    assert re.search(remedy, result.stderr), f"{remedy!r} not in:\n{result.stderr[-3000:]}"
    for output in outputs:
        assert not output.exists(), f"{output} left behind"
        leftovers = list(output.parent.glob(f".{output.name}.*")) if output.parent.is_dir() else []
        assert not leftovers, f"temporary outputs left behind: {leftovers}"
