"""The job plan of a Snakemake dry run: each pending job's rule, inputs, outputs, threads and benchmark
file, parsed from ``snakemake -n`` (whose job blocks list them), and the time the dry run took.

Parsing the printed plan rather than calling Snakemake's Python API keeps the figure what a user sees:
the cost of the command itself, start-up included.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_FIELD = re.compile(r"^\s+(input|output|benchmark|threads|jobid|wildcards): (.*)$")


@dataclass
class PlannedJob:
    rule: str
    jobid: int = -1
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    benchmark: str | None = None
    threads: int = 1
    wildcards: dict[str, str] = field(default_factory=dict)


@dataclass
class DryRun:
    seconds: float
    cpu_seconds: float
    jobs: list[PlannedJob]
    nothing_to_do: bool

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.rule] = counts.get(job.rule, 0) + 1
        return counts


def parse_plan(text: str) -> list[PlannedJob]:
    """The job blocks (``rule NAME:`` then indented fields) of a dry run's output, each job once."""
    jobs: dict[int, PlannedJob] = {}
    current: PlannedJob | None = None
    for line in text.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            current = PlannedJob(rule=line.split()[1].rstrip(":"))
            continue
        match = _FIELD.match(line)
        if current is None or match is None:
            continue
        key, value = match.groups()
        if key == "jobid":
            current.jobid = int(value)
            jobs[current.jobid] = current
        elif key == "input":
            current.inputs = [v.strip() for v in value.split(",")]
        elif key == "output":
            current.outputs = [v.strip() for v in value.split(",")]
        elif key == "benchmark":
            current.benchmark = value.strip()
        elif key == "threads":
            current.threads = int(value)
        elif key == "wildcards":
            current.wildcards = dict(w.strip().split("=", 1) for w in value.split(","))
    return list(jobs.values())


def snakemake_command() -> str:
    """The snakemake installed beside this interpreter (the project's .venv, whether or not it is on
    PATH), else whichever PATH finds."""
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.exists() else "snakemake"


def dry_run(
    workdir: Path, configfiles: list[str] | None = None, cores: int = 2, forceall: bool = False
) -> DryRun:
    """Run ``snakemake -n`` in ``workdir`` and return its time and plan; a failing run is an error.

    ``forceall``: the plan of a run from scratch, whatever results the folder already holds.
    """
    cmd = [snakemake_command(), "-n", "--cores", str(cores)] + (["--forceall"] if forceall else [])
    if configfiles:
        cmd += ["--configfile", *configfiles]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick = time.perf_counter()
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time does not grow with the machine's load, so it tells the command's own cost from waiting.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` in {workdir} failed ({out.returncode}):\n{text[-2000:]}")
    return DryRun(seconds, cpu, parse_plan(text), "Nothing to be done" in text)
