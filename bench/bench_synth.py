"""Time generation of 1,000 synthetic utterances with all cores; write results/bench/synth.json.

Usage: python bench/bench_synth.py [--utterances 1000] [--repeats 3] [--out results/bench/synth.json]
Repeats stop early once one run takes over 30 s, so a slow machine does a single run.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from avsr_sinks.data.synth import SynthConfig, generate_corpus
from avsr_sinks.io import write_json_atomic

log = logging.getLogger("bench_synth")


def main() -> None:
    """Run the benchmark and write its JSON summary."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("results/bench/synth.json"))
    args = parser.parse_args()
    n_held = max(1, args.utterances // 10)
    cfg = SynthConfig(seed=0, n_train=args.utterances - 2 * n_held, n_val=n_held, n_test=n_held)
    times, stats = [], {}
    for rep in range(args.repeats):
        scratch = Path(tempfile.mkdtemp(prefix="bench_synth_"))
        try:
            start = time.perf_counter()
            stats = generate_corpus(cfg, scratch / "corpus", workers=args.workers)
            times.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("repeat %d: %.1f s", rep, times[-1])
        if times[-1] > 30:
            break
    median = statistics.median(times)
    result = {
        "utterances": args.utterances,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "seconds": [round(t, 2) for t in times],
        "median_s": round(median, 2),
        "spread_s": round(max(times) - min(times), 2),
        "utterances_per_s": round(args.utterances / median, 1),
        "audio_hours": stats["splits"]["total"]["hours"],
        "median_av_pearson_r": stats["av_alignment"]["median_pearson_r"],
        "target_s": 60,
    }
    write_json_atomic(args.out, result)
    log.info("median %.1f s for %d utterances (%.1f/s)", median, args.utterances, result["utterances_per_s"])


if __name__ == "__main__":
    main()
