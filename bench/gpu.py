"""Model FLOP utilisation of the Llama-3.2-1B LoRA training step in bf16 at the ASR rate-4 sequence
length (bench/gpu_paper_scale.py), with the card's name; without a GPU the figure is recorded as
unmeasured. Budget: at least 35% of the matmul peak measured on the same card in the same run.

    python bench/gpu.py [--quick] [--out results/bench/gpu.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gpu_paper_scale
import torch
from harness import budget, write_result

BUDGET_MFU = 0.35


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer timed steps")
    ap.add_argument("--out", type=Path, default=Path("results/bench/gpu.json"))
    args = ap.parse_args()
    name = "Llama-3.2-1B LoRA step MFU (bf16, ASR rate 4)"
    if not torch.cuda.is_available():
        note = "no GPU on this machine: unmeasured"
        write_result(
            args.out, "gpu", args.quick, {}, {}, [budget(name, None, BUDGET_MFU, "min", "fraction", note)]
        )
        return
    detail = args.out.with_name("gpu_paper_scale.json")
    steps = ["--steps", "3", "--warmup", "1"] if args.quick else []
    report = gpu_paper_scale.main(["--llm", "1b", "--tasks", "asr", "--out", str(detail), *steps])
    row = report["configurations"][0]
    mfu = row.get("mfu_measured_peak")
    note = f"on {report['device_name']}" + ("" if mfu is not None else f"; {row.get('status')}")
    figures = {"device_name": report["device_name"], "configuration": row, "detail": str(detail)}
    write_result(
        args.out, "gpu", args.quick, {}, figures, [budget(name, mfu, BUDGET_MFU, "min", "fraction", note)]
    )


if __name__ == "__main__":
    main()
