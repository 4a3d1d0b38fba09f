"""`make bench`: run every benchmark of bench/, each in its own process, then write summary.md.

    python bench/run_all.py [--root .] [--quick] [--measured-run FILE] [--out-dir results/bench]

``--root`` is the finished pipeline run whose data/ and benchmark files the embedded-scale benchmarks
read (default: this checkout). ``--quick`` is a smoke run of every benchmark (tiny batches, single
repeats) whose numbers are not figures. ``--measured-run`` is an end_to_end.json of a real
``make reproduce`` of ``--root`` (``bench/end_to_end.py --run-end-to-end``), reported as the end-to-end
figure instead of the estimate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from harness import REPO
from summary import summarize

from avsr_sinks.io import write_text_atomic

BENCHMARKS = ("orchestration", "end_to_end", "training", "decoding", "gpu")
ROOTED = ("end_to_end", "training", "decoding")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--measured-run", type=Path, help="end_to_end.json of a real run of --root")
    ap.add_argument("--out-dir", type=Path, default=Path("results/bench"))
    args = ap.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"--root {args.root}: no such folder (the pipeline run whose outputs are read)")
    out_dir = args.out_dir.resolve()
    for name in BENCHMARKS:
        cmd = [sys.executable, str(REPO / "bench" / f"{name}.py"), "--out", str(out_dir / f"{name}.json")]
        cmd += ["--root", str(args.root.resolve())] if name in ROOTED else []
        cmd += ["--quick"] if args.quick else []
        if name == "end_to_end" and args.measured_run:
            cmd += ["--measured-run", str(args.measured_run.resolve())]
        tick = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"bench/{name}.py: {time.perf_counter() - tick:.0f} s", file=sys.stderr)
    command = (
        "make bench"
        + (" BENCH_QUICK=1" if args.quick else "")
        + (f" BENCH_ROOT={args.root}" if args.root != Path(".") else "")
        + (f" BENCH_MEASURED_RUN={args.measured_run}" if args.measured_run else "")
    )
    write_text_atomic(out_dir / "summary.md", summarize(out_dir, command) + "\n")


if __name__ == "__main__":
    main()
