"""The training step at the embedded scale: throughput and model FLOP utilisation against the matmul
peak measured in the same run, the decorrelation loss's overhead, and cached against online features.

- matmul peak: float32 square matrix products of a few sizes on the same threads; the best median rate;
- step: forward, backward and AdamW of the pipeline's loss (cross-entropy + CTC weight x CTC) on real
  batches of the training split (the frame-budget sampler of train.max_frames), FLOPs counted by
  torch's FlopCounterMode on one step, and where the time goes (torch.profiler, top operators);
- decorrelation: the same step with + lambda x decorrelation loss, alternating with the plain step on
  the same batches (budget: ratio at most 1.05);
- batch scaling: the MFU of steps on batches of 1, 2, 4 and 8 times train.max_frames, to show how much
  of the gap to the peak is the small batch;
- feature cache: a step fed from the feature cache against a step that first reads the audio and runs
  the frozen Whisper encoder online, alternating; one epoch's time is the median step times the
  epoch's batch count (budget: cached at least 2x faster).

The model is the experiment's (default ASR rate 4) on the real LM and cached features, with freshly
initialised projector and LoRA: the cost of a step does not depend on trained weights.

    python bench/training.py [--root .] [--quick] [--out results/bench/training.json]
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from harness import budget, interleaved, missing, model_bench_parser, spread, timed, write_result
from torch.utils.flop_counter import FlopCounterMode

from avsr_sinks.data.dataset import FrameBudgetBatchSampler
from avsr_sinks.data.manifest import read_split
from avsr_sinks.data.media import read_audio
from avsr_sinks.encoders.whisper import load_audio_encoder
from avsr_sinks.features.store import FeatureDataset, FeatureStore, collate_features
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.checkpoints import model_config
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import resolve_run
from avsr_sinks.training.from_spec import train_config
from avsr_sinks.training.losses import decorrelation_loss
from avsr_sinks.training.optimization import make_optimizer
from avsr_sinks.workflow.paths import experiment_features

log = logging.getLogger("bench.training")

MATMUL_FAMILY = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def matmul_peak(sizes: Sequence[int], repeats: int) -> dict[str, Any]:
    """Best median float32 matmul rate (FLOP/s) over square sizes, on torch's current threads."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        samples = interleaved({"mm": lambda _i, a=a, b=b: a @ b}, repeats, warmup=2)["mm"]
        rates[n] = 2 * n**3 / spread(samples)["median_s"]
    best = max(rates, key=rates.get)
    return {"flops_per_s": rates[best], "size": best, "rates_by_size": rates}


class StepBench:
    """The pipeline's training step (train.train's loss terms) on a model with fresh trainable weights."""

    def __init__(
        self, params: Mapping[str, Any], root: Path, experiment_name: str, batch_cap: int | None = None
    ) -> None:
        self.params, self.experiment = params, parse_name(experiment_name)
        corpus = root / params["corpus"]["root"]
        self.utterances = {u.uid: u for u in read_split(corpus, "train", check_media=False)}
        stores = {
            m: FeatureStore(root / p)
            for m, p in experiment_features(params, self.experiment, "train").items()
        }
        self.dataset = FeatureDataset(stores, {uid: u.transcript for uid, u in self.utterances.items()})
        spec = resolve_run(params, self.experiment)
        self.cfg = train_config(spec)
        sampler = FrameBudgetBatchSampler(
            self.dataset.frame_lengths(), max_frames=self.cfg.max_frames, shuffle=True, seed=0
        )
        # batch_cap (quick mode) keeps the first utterances of each batch: a smoke run, not a figure.
        self.epoch_batches = [b[:batch_cap] for b in sampler]
        torch.manual_seed(0)
        llm, tokenizer = load_llm(root / params["llm"]["path"], params["model"]["attn_implementation"])
        widths = {m: f.shape[1] for m, f in self.dataset[0][1].items()}
        self.model = AVSRModel(model_config(spec, widths), llm, tokenizer).train()
        self.optimizer = make_optimizer(self.model, self.cfg)

    def batch(self, i: int) -> dict[str, list]:
        return collate_features([self.dataset[j] for j in self.epoch_batches[i % len(self.epoch_batches)]])

    def step(self, batch: Mapping[str, list], decorr_lambda: float = 0.0) -> int:
        """One optimisation step; returns the tokens the LLM saw (as train_log.csv counts them)."""
        decorrelating = decorr_lambda > 0
        out, assembled = self.model(
            batch["features"], batch["transcripts"], output_hidden_states=decorrelating
        )
        loss = out.loss
        if self.cfg.ctc_weight:
            loss = loss + self.cfg.ctc_weight * out["ctc_loss"]
        if decorrelating:
            loss = loss + decorr_lambda * decorrelation_loss(
                out.hidden_states, assembled.segments, self.cfg.decorr_layers
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return int(assembled.attention_mask.sum())


def paired_mfu(bench: StepBench, batch: Mapping[str, list], peak_size: int, repeats: int) -> dict[str, Any]:
    """Steps on ``batch``, each timed beside a peak-size matmul: FLOPs and tokens of a step, the step
    times, the matmul times and the MFU of each pair.

    On a shared machine the available compute drifts within seconds; the MFU of each (step, matmul)
    pair compares the two under the same load, and the figure is the median over pairs.
    """
    with FlopCounterMode(display=False) as counter:
        tokens = bench.step(batch)  # also the warm-up
    flops = counter.get_total_flops()
    a, b = torch.randn(peak_size, peak_size), torch.randn(peak_size, peak_size)
    samples = interleaved({"step": lambda _i: bench.step(batch), "matmul": lambda _i: a @ b}, repeats)
    pair_mfu = [
        (flops / step_s) / (2 * peak_size**3 / mm_s)
        for step_s, mm_s in zip(samples["step"], samples["matmul"], strict=True)
    ]
    return {"tokens": tokens, "flops": flops, "samples": samples, "pair_mfu": pair_mfu}


def step_efficiency(bench: StepBench, peak_size: int, repeats: int, profiled_steps: int) -> dict[str, Any]:
    """Step throughput and MFU on one batch (paired_mfu), and where the step's CPU time goes."""
    batch = bench.batch(0)
    paired = paired_mfu(bench, batch, peak_size, repeats)
    tokens, flops = paired["tokens"], paired["flops"]
    samples, pair_mfu = paired["samples"], paired["pair_mfu"]
    step_s = spread(samples["step"])["median_s"]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(profiled_steps):
            bench.step(batch)
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    matmul_us = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_FAMILY)
    return {
        "step": spread(samples["step"]),
        "paired_matmul": spread(samples["matmul"]) | {"size": peak_size},
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / step_s,
        "flops_per_step": flops,
        "flops_per_token": flops / tokens,
        "achieved_flops_per_s": flops / step_s,
        "mfu": statistics.median(pair_mfu),
        "mfu_pairs_range": [min(pair_mfu), max(pair_mfu)],
        "profile_share_matmul": matmul_us / total_us,
        "profile_top_ops": [
            {"op": e.key, "self_cpu_share": e.self_cpu_time_total / total_us, "calls": e.count} for e in top
        ],
    }


def batch_scaling(
    bench: StepBench, factors: Sequence[int], peak_size: int, repeats: int
) -> list[dict[str, Any]]:
    """MFU (paired_mfu) of steps on batches of ``factor`` x the frame budget, the sampler's first batches
    joined: how much of the gap to the peak larger batches close."""
    rows = []
    for factor in factors:
        if factor > len(bench.epoch_batches):
            break
        joined = [j for batch in bench.epoch_batches[:factor] for j in batch]
        paired = paired_mfu(bench, collate_features([bench.dataset[j] for j in joined]), peak_size, repeats)
        step = spread(paired["samples"]["step"])
        rows.append(
            {
                "max_frames": factor * bench.cfg.max_frames,
                "utterances": len(joined),
                "tokens_per_step": paired["tokens"],
                "step": step,
                "tokens_per_s": paired["tokens"] / step["median_s"],
                "mfu": statistics.median(paired["pair_mfu"]),
            }
        )
    return rows


def decorrelation_overhead(bench: StepBench, repeats: int) -> dict[str, Any]:
    lam = bench.params["decorr"]["lambda"]
    samples = interleaved(
        {
            "plain": lambda i: bench.step(bench.batch(i)),
            "decorr": lambda i: bench.step(bench.batch(i), lam),
        },
        repeats,
    )
    plain, decorr = spread(samples["plain"]), spread(samples["decorr"])
    # Per pair (same batch, adjacent in time), so load swings between pairs cancel out.
    ratios = [d / p for d, p in zip(samples["decorr"], samples["plain"], strict=True)]
    return {"plain": plain, "decorr": decorr, "ratio": statistics.median(ratios)}


def feature_cache_speedup(bench: StepBench, root: Path, repeats: int) -> dict[str, Any]:
    enc = bench.params["audio_encoder"]
    encoder = load_audio_encoder(root / enc["path"], enc["window_seconds"])

    def online(i: int) -> None:
        batch = bench.batch(i)
        audio = encoder.encode([read_audio(bench.utterances[uid].audio_path) for uid in batch["uids"]])
        bench.step({**batch, "features": [{"audio": a} for a in audio]})

    samples = interleaved({"cached": lambda i: bench.step(bench.batch(i)), "online": online}, repeats)
    cached, online_s = spread(samples["cached"]), spread(samples["online"])
    batches = len(bench.epoch_batches)
    return {
        "cached_step": cached,
        "online_step": online_s,
        "epoch_batches": batches,
        "cached_epoch_s_estimate": cached["median_s"] * batches,
        "online_epoch_s_estimate": online_s["median_s"] * batches,
        # per pair (same batch, adjacent in time), so load swings between pairs cancel out
        "speedup": statistics.median(
            o / c for o, c in zip(samples["online"], samples["cached"], strict=True)
        ),
    }


def main() -> None:
    ap = model_bench_parser(
        __doc__, "results/bench/training.json", "few repeats and small matmuls (a smoke run)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    repeats = 1 if args.quick else 8
    peak = matmul_peak([256, 512] if args.quick else [512, 1024, 2048], 3 if args.quick else 10)
    experiment = parse_name(args.experiment)
    enc = params["audio_encoder"]
    needed = {
        "llm": args.root / params["llm"]["path"],
        "audio encoder": args.root / enc["path"],
        **{
            f"{m} train features": args.root / p
            for m, p in experiment_features(params, experiment, "train").items()
        },
    }
    inputs = {k: str(v) for k, v in needed.items()} | {"experiment": args.experiment}
    skipped = missing(needed)
    figures: dict[str, Any] = {"matmul_peak": peak}
    budgets = []
    if skipped:
        log.warning("skipping the step benchmarks: %s", skipped)
        budgets += [
            budget("training step MFU", None, 0.20, "min", "fraction of matmul peak", "inputs missing"),
            budget("decorrelation step ratio", None, 1.05, "max", "x", "inputs missing"),
            budget("feature cache epoch speed-up", None, 2.0, "min", "x", "inputs missing"),
        ]
    else:
        bench = StepBench(params, args.root, args.experiment, 2 if args.quick else None)
        figures["batch_assembly_s"] = timed(lambda: bench.batch(0))
        figures["step"] = step_efficiency(bench, peak["size"], repeats, 1 if args.quick else 3)
        figures["decorrelation"] = decorrelation_overhead(bench, repeats)
        figures["batch_scaling"] = batch_scaling(
            bench, [1, 2] if args.quick else [1, 2, 4, 8], peak["size"], max(1, repeats // 2)
        )
        figures["feature_cache"] = feature_cache_speedup(bench, args.root, max(1, repeats // 2))
        budgets += [
            budget("training step MFU", figures["step"]["mfu"], 0.20, "min", "fraction of matmul peak"),
            budget("decorrelation step ratio", figures["decorrelation"]["ratio"], 1.05, "max", "x"),
            budget("feature cache epoch speed-up", figures["feature_cache"]["speedup"], 2.0, "min", "x"),
        ]
    write_result(args.out, "training", args.quick, inputs, figures, budgets, skipped)


if __name__ == "__main__":
    main()
