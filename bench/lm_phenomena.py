"""Attention sinks and massive activations of the pretrained LM, per layer (PAPER.md section 5).

Runs ``avsr_sinks.analysis.lm_phenomena`` on held-out sentences of the corpus (``BOS sentence EOS``) and
writes ``results/bench/lm_phenomena.json``:

    python bench/lm_phenomena.py [--lm data/models/lm] [--corpus data/corpus/synth] [--sentences 64]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from avsr_sinks.analysis import lm_phenomena
from avsr_sinks.data.manifest import read_split
from avsr_sinks.model import load_llm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", type=Path, default=Path("data/models/lm"))
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus/synth"))
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=Path("results/bench/lm_phenomena.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    llm, tokenizer = load_llm(args.lm)
    sentences = [u.transcript for u in read_split(args.corpus, "val", check_media=False)][: args.sentences]
    report = {"lm": str(args.lm), **lm_phenomena(llm, tokenizer, sentences, args.threshold)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for layer in report["layers"]:
        print(
            f"layer {layer['layer']}: BOS sink in {100 * layer['bos_sink_head_share']:.0f}% of heads "
            f"(mean score {layer['bos_sink_score_mean']:.2f}), top-1/median {layer['top1_over_median']:.0f}"
        )


if __name__ == "__main__":
    main()
