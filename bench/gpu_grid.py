"""The GPU session's prepared script: the paper's seven settings on the embedded default through the
pipeline (configs/gpu-grid.yaml: SmolLM2, the synthetic corpus, baseline / decorr / ACT), and
bench/gpu_paper_scale.py's training-step timings of the paper's model sizes, run beside the pipeline's
first stages (corpus, features), which leave the GPU idle; everything it brings back is packed into
``--out`` as at most five files (the device tool returns eight at most, 16 MB each).

    python bench/gpu_grid.py --out DIR [--cores 16] [--deadline-min M] [--no-paper-scale] [--smoke]

Writes ``DIR/gpu_grid.json`` (the run's wall time, exit status, whether the deadline stopped it, job
seconds per rule from the Snakemake benchmark files, the device), ``DIR/gpu_grid.tar.gz`` (results:
tables, evaluations, ACT heads, analyses, video-encoder and corpus records, the training logs; the
Snakemake log and every job's log and benchmark file), ``DIR/gpu_grid_figures.tar.gz`` and
gpu_paper_scale's ``.json`` and ``.md``. ``--deadline-min`` stops the pipeline at that many minutes and
packs what finished, so that a lease of fixed length still brings results back; the pipeline runs with
``--keep-going``, so one failed job leaves the others to finish. What must be on the machine first (the
packages, the two model wheels) is in docs/performance.md, "On a GPU". ``--smoke`` runs the same steps on
the CI overlay (a tiny random LLM) and gpu_paper_scale's ``--smoke`` models, on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from end_to_end import read_benchmarks
from harness import REPO, machine

RESULT_FOLDERS = (
    "results/tables",
    "results/eval",
    "results/act",
    "results/analysis",
    "results/video_encoder",
    "results/corpus",
    "logs",
)
# The training logs (loss, learning rate, tokens per second at every step) and records, without weights.
CHECKPOINT_RECORDS = ("experiment.json", "train_log.csv")
SNAKEMAKE_GRACE_S = 30  # after SIGTERM, before the pipeline's jobs are killed


def run_pipeline(
    root: Path, overlay: str, cores: int, log_path: Path, deadline_s: float | None
) -> dict[str, Any]:
    """Snakemake over ``overlay`` with ``--keep-going``, stopped at ``deadline_s`` seconds if it is still
    running then (SIGTERM, then SIGKILL to its whole process group after a grace period)."""
    command = [
        "snakemake",
        "--cores",
        str(cores),
        "--rerun-incomplete",
        "--keep-going",
        "--configfile",
        overlay,
    ]
    start = time.perf_counter()
    stopped = False
    with log_path.open("w") as log:
        # A session of its own, so that the deadline reaches the jobs Snakemake started too.
        process = subprocess.Popen(
            command, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(process.pid, signal.SIGTERM)
            try:
                returncode = process.wait(timeout=SNAKEMAKE_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
    return {
        "command": " ".join(command),
        "returncode": returncode,
        "wall_s": time.perf_counter() - start,
        "stopped_at_deadline": stopped,
    }


def start_paper_scale(smoke: bool, out: Path, log_path: Path) -> subprocess.Popen:
    scale = ["--smoke", "--llm", "1b", "--tasks", "asr", "--steps", "1", "--warmup", "1"] if smoke else []
    script = Path(__file__).with_name("gpu_paper_scale.py")
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, str(script), *scale, "--out", str(out)], stdout=log, stderr=subprocess.STDOUT
        )


def seconds_by_rule(root: Path) -> dict[str, dict[str, float]]:
    """Job seconds per rule, from the benchmark files (logs/benchmarks/<rule or stage>/...)."""
    totals: dict[str, list[float]] = defaultdict(list)
    for path, figures in read_benchmarks(root).items():
        totals[Path(path).parts[2]].append(figures["s"])
    return {rule: {"jobs": len(s), "total_s": sum(s), "max_s": max(s)} for rule, s in sorted(totals.items())}


def pack(root: Path, archive: Path, paths: list[Path]) -> list[str]:
    """The existing ``paths`` into ``archive``, named relative to ``root`` (others by their file name);
    returns the names packed."""
    packed = []
    with tarfile.open(archive, "w:gz") as tar:
        for path in paths:
            if path.exists():
                name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
                tar.add(path, arcname=name)
                packed.append(name)
    return packed


def result_paths(root: Path) -> list[Path]:
    """The result folders and every checkpoint's records (not its weights)."""
    checkpoints = root / "results/checkpoints"
    records = sorted(p for name in CHECKPOINT_RECORDS for p in checkpoints.glob(f"*/{name}"))
    return [root / folder for folder in RESULT_FOLDERS] + records


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--root", type=Path, default=REPO, help="the checkout to run in")
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--deadline-min", type=float, help="stop the pipeline after this many minutes")
    ap.add_argument("--no-paper-scale", action="store_true", help="the pipeline alone")
    ap.add_argument("--smoke", action="store_true", help="the CI overlay and tiny models, on the CPU")
    args = ap.parse_args(argv)
    args.root = args.root.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    overlay = "configs/ci.yaml" if args.smoke else "configs/gpu-grid.yaml"
    log_path, paper_log = args.out / "snakemake.log", args.out / "gpu_paper_scale.log"
    paper_scale = (
        None
        if args.no_paper_scale
        else start_paper_scale(args.smoke, args.out / "gpu_paper_scale.json", paper_log)
    )
    deadline_s = None if args.deadline_min is None else 60 * args.deadline_min
    # One core stays with the paper-scale timings while they run.
    pipeline = run_pipeline(
        args.root, overlay, max(1, args.cores - (paper_scale is not None)), log_path, deadline_s
    )
    paper_scale_rc = None if paper_scale is None else paper_scale.wait()
    summary = {
        "overlay": overlay,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
        "machine": machine(),
        "pipeline": pipeline,
        "seconds_by_rule": seconds_by_rule(args.root),
        "paper_scale_returncode": paper_scale_rc,
    }
    if paper_scale_rc == 0:
        summary["paper_scale_configurations"] = len(
            json.loads((args.out / "gpu_paper_scale.json").read_text(encoding="utf-8"))["configurations"]
        )
    logs = [log_path] + ([paper_log] if paper_scale is not None else [])
    archive = args.out / "gpu_grid.tar.gz"
    summary["packed"] = pack(args.root, archive, result_paths(args.root) + logs)
    figures = args.out / "gpu_grid_figures.tar.gz"
    summary["packed_figures"] = pack(args.root, figures, [args.root / "results/figures"])
    for path in logs:
        path.unlink()
    (args.out / "gpu_grid.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(
        json.dumps(
            {k: summary[k] for k in ("overlay", "device", "pipeline", "paper_scale_returncode")}, indent=2
        )
    )
    if pipeline["returncode"] and not pipeline["stopped_at_deadline"]:
        sys.exit(f"the pipeline failed (exit {pipeline['returncode']}); its log is in gpu_grid.tar.gz")
    if paper_scale_rc:
        sys.exit(f"gpu_paper_scale failed (exit {paper_scale_rc}); its log is in gpu_grid.tar.gz")
    return summary


if __name__ == "__main__":
    main()
