"""The GPU session's prepared script: the paper's seven settings on the embedded default through the
pipeline (configs/gpu-grid.yaml: SmolLM2, the synthetic corpus, baseline / decorr / ACT), and
bench/gpu_paper_scale.py's training-step timings of the paper's model sizes; everything it brings back
is packed into ``--out`` as four files (the device tool returns eight at most).

    python bench/gpu_grid.py --out DIR [--cores 16] [--smoke]

Writes ``DIR/gpu_grid.json`` (the run's wall time, exit status, job seconds per rule from the Snakemake
benchmark files, the device), ``DIR/gpu_grid.tar.gz`` (results/tables, results/figures, the benchmark
files and the Snakemake log), and gpu_paper_scale's ``.json`` and ``.md``. What must be on the machine
first (the packages, the two model wheels) is in docs/performance.md, "On a GPU". ``--smoke`` runs the
same steps on the CI overlay (a tiny random LLM) and gpu_paper_scale's ``--smoke`` models, on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import gpu_paper_scale
import torch
from end_to_end import read_benchmarks
from harness import REPO, machine

RESULT_FOLDERS = ("results/tables", "results/figures", "logs/benchmarks")


def run_pipeline(root: Path, overlay: str, cores: int, log_path: Path) -> dict[str, Any]:
    command = ["snakemake", "--cores", str(cores), "--rerun-incomplete", "--configfile", overlay]
    start = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, check=False)
    return {
        "command": " ".join(command),
        "returncode": done.returncode,
        "wall_s": time.perf_counter() - start,
    }


def seconds_by_rule(root: Path) -> dict[str, dict[str, float]]:
    """Job seconds per rule, from the benchmark files (logs/benchmarks/<rule or stage>/...)."""
    totals: dict[str, list[float]] = defaultdict(list)
    for path, figures in read_benchmarks(root).items():
        totals[Path(path).parts[2]].append(figures["s"])
    return {rule: {"jobs": len(s), "total_s": sum(s), "max_s": max(s)} for rule, s in sorted(totals.items())}


def pack(root: Path, archive: Path, extra: list[Path]) -> list[str]:
    packed = []
    with tarfile.open(archive, "w:gz") as tar:
        for folder in RESULT_FOLDERS:
            if (root / folder).exists():
                tar.add(root / folder, arcname=folder)
                packed.append(folder)
        for path in extra:
            tar.add(path, arcname=path.name)
            packed.append(path.name)
    return packed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--root", type=Path, default=REPO, help="the checkout to run in")
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--smoke", action="store_true", help="the CI overlay and tiny models, on the CPU")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    overlay = "configs/ci.yaml" if args.smoke else "configs/gpu-grid.yaml"
    log_path = args.out / "snakemake.log"
    pipeline = run_pipeline(args.root, overlay, args.cores, log_path)
    scale = (
        ["--smoke", "--llm", "1b", "--tasks", "asr", "--steps", "1", "--warmup", "1"] if args.smoke else []
    )
    paper_scale = gpu_paper_scale.main([*scale, "--out", str(args.out / "gpu_paper_scale.json")])
    summary = {
        "overlay": overlay,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
        "machine": machine(),
        "pipeline": pipeline,
        "seconds_by_rule": seconds_by_rule(args.root),
        "paper_scale_configurations": len(paper_scale["configurations"]),
        "packed": pack(args.root, args.out / "gpu_grid.tar.gz", [log_path]),
    }
    log_path.unlink()
    (args.out / "gpu_grid.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: summary[k] for k in ("overlay", "device", "pipeline")}, indent=2))
    if pipeline["returncode"]:
        sys.exit(f"the pipeline failed (exit {pipeline['returncode']}); its log is in gpu_grid.tar.gz")
    return summary


if __name__ == "__main__":
    main()
