"""How the LM's attention sinks and massive activations grow with its pretraining budget.

Rebuilds the embedded default's LM as the pipeline does (the pretrain_lm rule's copy phase, then the
stretch_lm rule's phase, under params.yaml) and measures it along the way: at each chosen step,
``avsr_sinks.analysis.lm_phenomena`` on held-out sentences (BOS-sink share of heads and top-1/median
activation per layer) and the training seconds spent so far (measurement time excluded). Writes
``results/bench/lm_budget.{json,png}``; the built LM is thrown away.

    python bench/lm_budget.py [--threads 1] [--corpus data/corpus/synth] [--sentences 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from avsr_sinks.analysis import lm_phenomena  # noqa: E402
from avsr_sinks.config import load_params  # noqa: E402
from avsr_sinks.experiment import lm_pretrain_config, lm_pretraining_text  # noqa: E402
from avsr_sinks.lm import continue_stretched, pretrain_lm, train_tokenizer  # noqa: E402

COPY_STEPS = (1, 100, 250, 500, 1000, 1500, 2000, 2500)  # and the phase's last step
STRETCH_STEPS = (250, 500)


def probe_steps(chosen: tuple[int, ...], last: int) -> tuple[int, ...]:
    return tuple(sorted({s for s in chosen if s < last} | {last}))


class Probe:
    """The ``on_step`` hook: measures the model at chosen steps and keeps the training clock."""

    def __init__(self, phase: str, steps: tuple[int, ...], sentences: list[str], tokenizer, offset: float):
        self.phase, self.steps, self.sentences, self.tokenizer = phase, set(steps), sentences, tokenizer
        self.start, self.measuring, self.offset = time.perf_counter(), 0.0, offset
        self.points: list[dict] = []

    def training_seconds(self) -> float:
        return self.offset + time.perf_counter() - self.start - self.measuring

    def __call__(self, step: int, model) -> None:
        if step not in self.steps:
            return
        seconds = self.training_seconds()
        tick = time.perf_counter()
        report = lm_phenomena(model, self.tokenizer, self.sentences)
        model.train()
        self.measuring += time.perf_counter() - tick
        self.points.append({"phase": self.phase, "step": step, "training_seconds": seconds, **report})
        shares = " ".join(f"{100 * layer['bos_sink_head_share']:.0f}" for layer in report["layers"])
        ratios = " ".join(f"{layer['top1_over_median']:.0f}" for layer in report["layers"])
        print(f"{self.phase} step {step} ({seconds:.0f} s): BOS sink % {shares}; top-1/median {ratios}")


def plot(points: list[dict], threads: int, out: Path) -> None:
    fig, (sinks, outliers) = plt.subplots(1, 2, figsize=(10, 4))
    minutes = [p["training_seconds"] / 60 for p in points]
    for layer in range(len(points[0]["layers"])):
        sinks.plot(
            minutes,
            [100 * p["layers"][layer]["bos_sink_head_share"] for p in points],
            "o-",
            label=f"layer {layer}",
        )
        outliers.plot(
            minutes, [p["layers"][layer]["top1_over_median"] for p in points], "o-", label=f"layer {layer}"
        )
    copy_end = max(m for m, p in zip(minutes, points, strict=True) if p["phase"] == "copy")
    stretch_start = copy_end if points[-1]["phase"] == "stretch" else None
    for ax in (sinks, outliers):
        ax.set_xlabel(f"pretraining minutes ({threads} thread{'s' if threads > 1 else ''})")
        if stretch_start is not None:
            ax.axvline(stretch_start, color="grey", linestyle=":", label="stretch phase")
    sinks.axhline(50, color="black", linewidth=0.5)
    sinks.set_ylabel("heads where BOS is a sink (%)")
    outliers.axhline(100, color="black", linewidth=0.5)
    outliers.set_ylabel("top-1 / median |activation|")
    outliers.set_yscale("log")
    sinks.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, nargs="+", default=[Path("params.yaml")], help="and overlays")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus/synth"))
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/bench/lm_budget.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    cfg = lm_pretrain_config(params)
    text, heldout = lm_pretraining_text(params, args.corpus)
    tokenizer = train_tokenizer(text, params["llm"]["tokenizer_vocab_size"])
    probe_sentences = heldout[: args.sentences]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        copy = Probe("copy", probe_steps(COPY_STEPS, cfg.steps), probe_sentences, tokenizer, 0.0)
        summaries = {
            "copy": pretrain_lm(cfg, tokenizer, text, heldout, scratch / "copy", scratch / "copy.csv", copy)
        }
        points = copy.points
        if cfg.stretch_phase is not None and cfg.stretch_phase.steps > 0:
            stretch_steps = probe_steps(STRETCH_STEPS, cfg.stretch_phase.steps)
            stretch = Probe("stretch", stretch_steps, probe_sentences, tokenizer, copy.training_seconds())
            summaries["stretch"] = continue_stretched(
                cfg, scratch / "copy", text, heldout, scratch / "lm", scratch / "stretch.csv", stretch
            )
            points += stretch.points
    report = {
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "summaries": summaries,
        "points": points,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(points, args.threads, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
