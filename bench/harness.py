"""What every benchmark of ``make bench`` shares: the machine record, timing with warm-up and repeats,
and the JSON layout that bench/summary.py reads.

Each result file is ``{"benchmark", "machine", "quick", "inputs", "figures", "budgets", "skipped"}``;
a budget is ``{"name", "value", "budget", "direction", "met", "unit"}`` with ``direction`` "max" (the
value must stay at or under the budget) or "min" (at or over it), or ``value``/``met`` None when the
figure could not be measured here (``note`` then says why).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from avsr_sinks.io import write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def model_bench_parser(doc: str, out: str, quick_help: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark that runs one experiment's model on a finished run's data, with
    logging set up: --root, --params, --experiment, --threads, --quick and --out."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("."), help="the pipeline run whose data/ is read")
    ap.add_argument("--params", nargs="+", default=["params.yaml"])
    ap.add_argument("--experiment", default="asr-a4-baseline-s0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", type=Path, default=Path(out))
    return ap


def cpu_model() -> str:
    """The CPU's marketing name (platform.processor() is empty on Linux, so read /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where the figures were taken: every JSON records it, since the ratios only hold per machine."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1min": os.getloadavg()[0],
    }


def spread(samples: list[float]) -> dict[str, Any]:
    """Median and spread (min, max, relative range) of repeated timings, in seconds."""
    median = statistics.median(samples)
    return {
        "median_s": median,
        "min_s": min(samples),
        "max_s": max(samples),
        "relative_spread": (max(samples) - min(samples)) / median if median else 0.0,
        "repeats": len(samples),
    }


def timed(fn: Callable[[], Any]) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def interleaved(runs: Mapping[str, Callable[[int], Any]], repeats: int, warmup: int = 1) -> dict[str, list]:
    """Time each variant ``repeats`` times, alternating, after ``warmup`` untimed calls of each.

    Alternating puts drifts in the load of a shared machine on every variant alike, so their ratio holds
    even when the absolute times do not. Each call gets the repeat index (to pick its batch).
    """
    for i in range(warmup):
        for run in runs.values():
            run(i)
    samples: dict[str, list] = {name: [] for name in runs}
    for i in range(repeats):
        for name, run in runs.items():
            samples[name].append(timed(lambda run=run, i=i: run(i)))
    return samples


def budget(
    name: str, value: float | None, limit: float, direction: str, unit: str, note: str = ""
) -> dict[str, Any]:
    if direction not in ("max", "min"):
        raise ValueError(f"budget {name}: direction {direction!r}; expected 'max' or 'min'")
    met = None if value is None else (value <= limit if direction == "max" else value >= limit)
    return {
        "name": name,
        "value": value,
        "budget": limit,
        "direction": direction,
        "met": met,
        "unit": unit,
        "note": note,
    }


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write_result(
    out: Path,
    benchmark: str,
    quick: bool,
    inputs: Mapping[str, Any],
    figures: Mapping[str, Any],
    budgets: list[dict[str, Any]],
    skipped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write one benchmark's result file atomically and return what was written."""
    result = {
        "benchmark": benchmark,
        "machine": machine(),
        "git_commit": git_commit(),
        "quick": quick,
        "inputs": dict(inputs),
        "figures": dict(figures),
        "budgets": budgets,
        "skipped": dict(skipped or {}),
    }
    write_json_atomic(out, result)
    return result


def missing(paths: Mapping[str, Path]) -> dict[str, str]:
    """{what: reason} for each input path that does not exist, so a benchmark can say what it lacks."""
    return {
        what: f"{path} is missing; run `make reproduce` (or pass --root to a finished run) first"
        for what, path in paths.items()
        if not Path(path).exists()
    }
