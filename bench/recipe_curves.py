"""Training curves of the embedded recipe: when does a model start to use its audio or video?

Reads each ``results/checkpoints/<experiment>/train_log.csv`` and plots the cross-entropy of the
transcript (per step, smoothed) against the LM's text-only level, log(held-out perplexity) from
``results/lm/pretrain.json``: a curve that falls below that line is reading its modality tokens. The CTC
warm-up steps, where the LLM does not run, show only the CTC loss.

    python bench/recipe_curves.py [--experiments asr-a4-baseline-s0 ...]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from avsr_sinks import pipeline  # noqa: E402
from avsr_sinks.config import load_params  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", type=Path, default=Path("results/checkpoints"))
    ap.add_argument("--experiments", nargs="*", help="default: every finished checkpoint")
    ap.add_argument("--lm-summary", type=Path, help="default: the summary of the LM params.yaml uses")
    ap.add_argument("--smooth", type=int, default=25, help="moving-average window in steps")
    ap.add_argument("--out", type=Path, default=Path("results/bench/recipe_curves.png"))
    args = ap.parse_args()
    names = args.experiments or sorted(p.parent.name for p in args.checkpoints.glob("*/train_log.csv"))
    if not names:
        raise SystemExit(f"no train_log.csv under {args.checkpoints}: train an experiment first")
    lm_summary = args.lm_summary or Path(pipeline.lm_summary(load_params(["params.yaml"])))
    text_only = math.log(json.loads(lm_summary.read_text())["heldout_perplexity"])
    fig, (ce_ax, ctc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    summary = {}
    for name in names:
        log = pd.read_csv(args.checkpoints / name / "train_log.csv")
        ce = log["loss"].rolling(args.smooth, min_periods=1).mean()
        ce_ax.plot(log["step"], ce, label=name)
        ctc_ax.plot(log["step"], log["ctc_loss"].rolling(args.smooth, min_periods=1).mean(), label=name)
        below = log.loc[ce < text_only, "step"]
        summary[name] = {
            "first_step_below_text_only": int(below.iloc[0]) if len(below) else None,
            "final_ce": float(ce.iloc[-1]),
        }
    ce_ax.axhline(text_only, color="grey", linestyle="--", label="text-only level (LM)")
    ce_ax.set(xlabel="step", ylabel="transcript cross-entropy (nats/token)", title="LLM loss")
    ctc_ax.set(xlabel="step", ylabel="CTC loss", yscale="log", title="CTC on the projected tokens")
    ce_ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    report = {"text_only_ce": text_only, "experiments": summary}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
