"""The jobs that run no model start without torch, transformers or peft: importing them is seconds of
every such job (a run has dozens: corpus checks, tables, figures), and of every test that runs one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

MODEL_FREE_SCRIPTS = (
    "check_corpus.py",
    "check_corpus_media.py",
    "make_claims_table.py",
    "make_figures.py",
    "make_summary_tables.py",
    "make_tables.py",
    "make_tables_page.py",
)


@pytest.mark.parametrize("script", MODEL_FREE_SCRIPTS)
def test_a_model_free_job_starts_without_torch(script: str) -> None:
    imports_of_the_script = (
        f"import json, runpy, sys; runpy.run_path('workflow_scripts/{script}'); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", imports_of_the_script], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "avsr_sinks" in loaded and not loaded & {"torch", "transformers", "peft"}
