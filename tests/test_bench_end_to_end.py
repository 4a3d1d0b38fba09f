"""bench/end_to_end.py reports the wall time of an earlier measured run beside the stage table that it
reads from the same run's benchmark files, and refuses a result file that measured another folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "end_to_end.py"


def earlier_result(path: Path, root: Path, wall_s: float | None) -> Path:
    run = {"wall_s": wall_s, "peak_process_rss_mb": 1900.0, "cores": 2}
    figures = {"measured_run": run} if wall_s else {}
    path.write_text(json.dumps({"inputs": {"root": str(root.resolve())}, "figures": figures}))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True)


def test_measured_run_is_carried_and_stages_come_from_the_runs_benchmark_files(tmp_path: Path) -> None:
    root = tmp_path / "run"
    bench = root / "logs" / "benchmarks" / "train"
    bench.mkdir(parents=True)
    (bench / "asr-a4-baseline-s0.tsv").write_text("s\th:m:s\tmax_rss\n1234.5\t0:20:34\t1100.0\n")
    earlier = earlier_result(tmp_path / "earlier.json", root, 9000.0)
    out = tmp_path / "end_to_end.json"
    done = run("--root", str(root), "--measured-run", str(earlier), "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["figures"]["measured_run"]["wall_s"] == 9000.0
    (wall,) = result["budgets"]
    # 150 minutes: over the 120-minute budget
    assert wall["value"] == 150.0 and wall["met"] is False and "measured" in wall["note"]
    train_asr = next(r for r in result["figures"]["stages"] if r["stage"] == "train (asr)")
    # The plan is the run from scratch: every ASR training, the one measured and the others at its time.
    assert train_asr["measured"] == 1 and train_asr["jobs"] > 1
    assert train_asr["job_s"] == 1234.5 * train_asr["jobs"]


def test_a_result_of_another_folder_or_without_a_measured_run_is_refused(tmp_path: Path) -> None:
    other = earlier_result(tmp_path / "other.json", tmp_path / "elsewhere", 5400.0)
    done = run("--root", str(tmp_path), "--measured-run", str(other), "--out", str(tmp_path / "o.json"))
    assert done.returncode != 0 and "elsewhere" in done.stderr and "other.json" in done.stderr
    estimate = earlier_result(tmp_path / "estimate.json", tmp_path, None)
    done = run("--root", str(tmp_path), "--measured-run", str(estimate), "--out", str(tmp_path / "o.json"))
    assert done.returncode != 0 and "no measured run" in done.stderr
    assert not (tmp_path / "o.json").exists()
