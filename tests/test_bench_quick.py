"""`make bench` in quick mode runs every benchmark and writes result files of the documented layout.

Nothing here is timed: the figures of a quick run are not checked, only that each benchmark runs, what
it writes, and that the summary reports every budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import REPO

BENCHMARKS = ("orchestration", "end_to_end", "training", "decoding", "gpu")

BUDGET = {
    "type": "object",
    "required": ["name", "value", "budget", "direction", "met", "unit", "note"],
    "properties": {
        "name": {"type": "string"},
        "value": {"type": ["number", "null"]},
        "budget": {"type": "number"},
        "direction": {"enum": ["max", "min"]},
        "met": {"type": ["boolean", "null"]},
        "unit": {"type": "string"},
        "note": {"type": "string"},
    },
    "additionalProperties": False,
}

RESULT = {
    "type": "object",
    "required": ["benchmark", "machine", "git_commit", "quick", "inputs", "figures", "budgets", "skipped"],
    "properties": {
        "benchmark": {"enum": list(BENCHMARKS)},
        "machine": {
            "type": "object",
            "required": ["nproc", "cpu_model", "torch_threads", "torch", "gpu", "load_average_1min"],
            "properties": {
                "nproc": {"type": "integer", "minimum": 1},
                "cpu_model": {"type": "string", "minLength": 1},
                "torch_threads": {"type": "integer", "minimum": 1},
            },
        },
        "git_commit": {"type": "string"},
        "quick": {"const": True},
        "inputs": {"type": "object"},
        "figures": {"type": "object"},
        "budgets": {"type": "array", "items": BUDGET, "minItems": 1},
        "skipped": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def run_quick(root: Path, out_dir: Path) -> dict[str, dict]:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run_all.py"),
            "--quick",
            "--root",
            str(root),
            "--out-dir",
            str(out_dir),
        ],
        cwd=REPO,
        check=True,
    )
    results = {name: json.loads((out_dir / f"{name}.json").read_text()) for name in BENCHMARKS}
    for result in results.values():
        jsonschema.validate(result, RESULT)
    summary = (out_dir / "summary.md").read_text()
    for result in results.values():
        for b in result["budgets"]:
            assert b["name"] in summary
    return results


@pytest.mark.slow
def test_quick_mode_without_a_finished_run(tmp_path: Path) -> None:
    """On a fresh checkout the model benchmarks say what they lack; the rest still measure."""
    (tmp_path / "empty-run").mkdir()
    results = run_quick(tmp_path / "empty-run", tmp_path / "bench")
    assert set(results["training"]["skipped"]) >= {"llm", "audio train features"}
    assert results["decoding"]["skipped"]
    assert all(b["value"] is None for b in results["training"]["budgets"] + results["decoding"]["budgets"])
    plan = results["end_to_end"]["figures"]
    assert plan["jobs_planned"] > 0 and plan["jobs_measured"] == 0
    orchestration = results["orchestration"]["figures"]
    assert orchestration["paper_dry_run"]["jobs"] > 0
    assert orchestration["feature_cache_once"]["once_per_cache"] is True
    assert "unmeasured" in (tmp_path / "bench" / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "results" / "checkpoints" / "asr-a4-baseline-s0" / "model.safetensors").is_file(),
    reason="needs the embedded default's outputs (make reproduce)",
)
def test_quick_mode_on_the_finished_default(tmp_path: Path) -> None:
    results = run_quick(REPO, tmp_path / "bench")
    assert not results["training"]["skipped"] and not results["decoding"]["skipped"]
    assert results["training"]["figures"]["step"]["tokens_per_s"] > 0
    assert isinstance(results["decoding"]["figures"]["identical_hypotheses"], bool)
