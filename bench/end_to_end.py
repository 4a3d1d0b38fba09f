"""`make reproduce` on the embedded default: its 2-core wall time, estimated from the per-job times that
Snakemake's ``benchmark:`` files measured, or measured for real with ``--run-end-to-end``.

The estimate takes the job plan of a dry run from scratch (``--forceall`` in the checkout's own folder),
gives every job the time of its benchmark file under ``--root`` (files found by glob in
``logs/benchmarks`` and ``results/benchmarks``), a job without one the median of the measured jobs of
its rule and task (else of its rule), and schedules the plan on 2 cores, longest ready job first, each
job holding its threads. The measured times were taken with other jobs running beside them, so they
already carry the contention of a 2-core run.

``--run-end-to-end`` runs ``make clean-results`` and ``make reproduce CORES=2`` in ``--root`` (which
removes that folder's results/ and logs/) and records the wall time and the peak resident memory of the
largest process; the stage table is then read from that run's benchmark files. ``--measured-run FILE``
carries the measured run of an earlier ``--run-end-to-end`` JSON, so the stage table can be redone from
the same run's benchmark files without spending its hours again. Budget: 120 minutes (2 cores).

    python bench/end_to_end.py [--root .] [--run-end-to-end | --measured-run FILE]
        [--out results/bench/end_to_end.json]
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import logging
import resource
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import REPO, budget, write_result
from snakemake_plan import PlannedJob, dry_run

log = logging.getLogger("bench.end_to_end")

BENCHMARK_GLOBS = ("logs/benchmarks/**/*.tsv", "results/benchmarks/**/*.tsv")
BUDGET_MINUTES = 120


def read_benchmarks(root: Path) -> dict[str, dict[str, float]]:
    """{benchmark path relative to root: {"s", "max_rss_mb"}}, the median over a file's rows."""
    found = {}
    for pattern in BENCHMARK_GLOBS:
        for path in sorted(root.glob(pattern)):
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
            if not rows or "s" not in rows[0]:
                raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column)")
            found[str(path.relative_to(root))] = {
                "s": statistics.median(float(r["s"]) for r in rows),
                "max_rss_mb": max(float(r["max_rss"]) for r in rows if r["max_rss"] not in ("", "NA")),
            }
    return found


def stage(job: PlannedJob) -> str:
    """The rule, and for experiment jobs the task, since an ASR and a VSR training differ in length."""
    experiment = job.wildcards.get("experiment")
    return f"{job.rule} ({experiment.split('-')[0]})" if experiment else job.rule


def job_times(jobs: list[PlannedJob], measured: dict[str, dict[str, float]]) -> dict[int, tuple[float, str]]:
    """{jobid: (seconds, "measured" | "stage median" | "rule median" | "unmeasured")}."""
    by_stage, by_rule = defaultdict(list), defaultdict(list)
    for job in jobs:
        if job.benchmark in measured:
            by_stage[stage(job)].append(measured[job.benchmark]["s"])
            by_rule[job.rule].append(measured[job.benchmark]["s"])
    times = {}
    for job in jobs:
        if job.benchmark in measured:
            times[job.jobid] = (measured[job.benchmark]["s"], "measured")
        elif by_stage[stage(job)]:
            times[job.jobid] = (statistics.median(by_stage[stage(job)]), "stage median")
        elif by_rule[job.rule]:
            times[job.jobid] = (statistics.median(by_rule[job.rule]), "rule median")
        else:
            times[job.jobid] = (0.0, "unmeasured" if job.benchmark else "no benchmark file")
    return times


def dependencies(jobs: list[PlannedJob]) -> dict[int, set[int]]:
    """{jobid: the jobids whose outputs it reads} (an input equal to an output, or inside one)."""
    producers = {out: job.jobid for job in jobs for out in job.outputs}
    deps: dict[int, set[int]] = {}
    for job in jobs:
        deps[job.jobid] = {
            producers[out]
            for inp in job.inputs
            for out in producers
            if inp == out or inp.startswith(out.rstrip("/") + "/")
        } - {job.jobid}
    return deps


def schedule(jobs: list[PlannedJob], times: dict[int, tuple[float, str]], cores: int) -> float:
    """Makespan of the plan on ``cores``: longest ready job first, each job holding min(threads, cores)."""
    deps = dependencies(jobs)
    threads = {j.jobid: min(j.threads, cores) for j in jobs}
    waiting = {j: set(d) for j, d in deps.items()}
    done: set[int] = set()
    running: list[tuple[float, int]] = []
    now, free = 0.0, cores
    while len(done) < len(jobs):
        ready = sorted(
            (j for j, d in waiting.items() if not d and j not in done and all(j != r for _, r in running)),
            key=lambda j: -times[j][0],
        )
        started = False
        for j in ready:
            if threads[j] <= free:
                heapq.heappush(running, (now + times[j][0], j))
                free -= threads[j]
                started = True
        if started and free:
            continue
        if not running:
            raise RuntimeError(f"the plan has a dependency cycle among jobs {sorted(set(waiting) - done)}")
        now, finished = heapq.heappop(running)
        free += threads[finished]
        done.add(finished)
        waiting.pop(finished)
        for d in waiting.values():
            d.discard(finished)
    return now


def stage_table(jobs: list[PlannedJob], times: dict[int, tuple[float, str]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for job in jobs:
        seconds, source = times[job.jobid]
        row = rows.setdefault(stage(job), {"stage": stage(job), "jobs": 0, "measured": 0, "job_s": 0.0})
        row["jobs"] += 1
        row["measured"] += source == "measured"
        row["job_s"] += seconds
    total = sum(r["job_s"] for r in rows.values()) or 1.0
    for row in rows.values():
        row["share"] = row["job_s"] / total
    return sorted(rows.values(), key=lambda r: -r["job_s"])


def run_for_real(root: Path, cores: int) -> dict[str, Any]:
    subprocess.run(["make", "clean-results"], cwd=root, check=True)
    tick = time.perf_counter()
    subprocess.run(["make", "reproduce", f"CORES={cores}"], cwd=root, check=True)
    seconds = time.perf_counter() - tick
    # ru_maxrss of the children is the peak of the largest single process, in KiB on Linux.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": seconds, "peak_process_rss_mb": peak_mb, "cores": cores}


def earlier_measured_run(path: Path, root: Path) -> dict[str, Any]:
    """The measured run recorded in ``path``, which must be a --run-end-to-end result for ``root``."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"--measured-run {path}: cannot read it as JSON ({err})") from err
    run = earlier.get("figures", {}).get("measured_run")
    if not run:
        raise SystemExit(f"--measured-run {path}: it holds no measured run (made without --run-end-to-end)")
    if Path(earlier.get("inputs", {}).get("root", "")) != root.resolve():
        raise SystemExit(
            f"--measured-run {path}: it measured {earlier.get('inputs', {}).get('root')}, not --root {root}"
        )
    return run


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("."), help="the run whose benchmark files are read")
    ap.add_argument("--cores", type=int, default=2)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--run-end-to-end", action="store_true", help="run `make reproduce` for real in --root")
    mode.add_argument(
        "--measured-run", type=Path, help="an earlier end_to_end.json whose measured run of --root to report"
    )
    ap.add_argument("--quick", action="store_true", help="accepted for make bench; the estimate is quick")
    ap.add_argument("--out", type=Path, default=Path("results/bench/end_to_end.json"))
    args = ap.parse_args()
    measured_run = earlier_measured_run(args.measured_run, args.root) if args.measured_run else None
    plan = dry_run(REPO, cores=args.cores, forceall=True)
    if args.run_end_to_end:
        measured_run = run_for_real(args.root, args.cores)
    measured = read_benchmarks(args.root)
    times = job_times(plan.jobs, measured)
    wall = schedule(plan.jobs, times, args.cores)
    peak_rss = max((m["max_rss_mb"] for m in measured.values()), default=None)
    figures: dict[str, Any] = {
        "estimate_wall_s": wall,
        "estimate_is": "from measured per-job times, scheduled on the plan; not a measured run",
        "job_seconds_total": sum(t for t, _ in times.values()),
        "jobs_planned": len(plan.jobs),
        "jobs_measured": sum(s == "measured" for _, s in times.values()),
        "jobs_unmeasured": sorted(
            stage(j)
            for j in plan.jobs
            if times[j.jobid][1] in ("unmeasured", "no benchmark file") and j.rule != "all"
        ),
        "peak_job_rss_mb_measured": peak_rss,
        "stages": stage_table(plan.jobs, times),
        "plan_counts": plan.counts(),
    }
    value = wall / 60
    note = "estimate from measured stage times"
    if figures["jobs_unmeasured"]:
        note += (
            f"; {len(figures['jobs_unmeasured'])} job(s) of unmeasured stages counted as 0 s (a lower bound)"
        )
    if measured_run:
        figures["measured_run"] = measured_run
        value, note = measured_run["wall_s"] / 60, "measured `make reproduce`"
    budgets = [
        budget(
            "make reproduce wall time (embedded default, 2 cores)", value, BUDGET_MINUTES, "max", "min", note
        )
    ]
    inputs = {"benchmark_files": len(measured), "root": str(args.root.resolve()), "plan_from": str(REPO)}
    write_result(args.out, "end_to_end", args.quick, inputs, figures, budgets)


if __name__ == "__main__":
    main()
