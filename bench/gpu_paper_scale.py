"""Training-step time, memory and MFU of AVSRModel at the paper's model sizes on one GPU.

Usage:
    python bench/gpu_paper_scale.py [--llm 1b,3b] [--tasks asr,vsr,avsr] [--steps 10] [--warmup 3]
        [--seconds 6] [--out results/bench/gpu_paper_scale.json] [--smoke]

Randomly initialised models of the real sizes, built directly on the GPU (no weights read, no CPU RAM
spent on them): Llama-3.2-1B or -3B (LoRA on q and v), Whisper-medium.en's encoder and AV-HuBERT Large
(the defaults of ``avsr_sinks.encoders.avhubert.AVHubertConfig``), both frozen and run online under
no_grad (the pipeline trains on their cached outputs, so AV-HuBERT gets none of the paper's VSR LoRA).
The recipe (projector, LoRA scaling, frame budget, optimiser, attention implementation) is params.yaml
with configs/paper.yaml over it; each step runs forward under bf16 autocast with fp32 weights
(accelerate's mixed precision), backward, gradient clipping and AdamW. ``--smoke`` shrinks every model
and input and runs in fp32 on the CPU, so that tests exercise every code path.

The workload's assumptions and the analytic FLOP count are in bench/paper_scale_flops.py's docstring;
the models and inputs are built by bench/paper_scale_models.py, timed by bench/paper_scale_timing.py.
MFU = analytic FLOPs / median step time / peak, against the peak measured by a large bf16 matmul in the
same run and, for a card known by name, the datasheet's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from paper_scale_flops import (
    LLAMA_32,
    PAPER,
    SMOKE,
    TASK_RATES,
    TRANSCRIPT_TOKENS_PER_SECOND,
    LlamaShape,
    Scale,
    Workload,
    make_workload,
    step_flops,
)
from paper_scale_models import Encoders, build_encoders, llama_config, make_inputs, make_tokenizer
from paper_scale_timing import datasheet_peak, measure_matmul_peak, memory_freed, run_steps, training_step
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from avsr_sinks.io import git_commit, write_json_atomic, write_text_atomic
from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.settings.config import load_params

log = logging.getLogger("gpu_paper_scale")

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Recipe:
    """The paper-scale settings the step depends on (params.yaml with configs/paper.yaml over it)."""

    compression: str
    projector_hidden: int
    projector_layernorm: bool
    lora_rank: int
    lora_alpha: float
    lora_targets: tuple[str, ...]
    attn_implementation: str
    prompts: Mapping[str, str]
    lr: Mapping[str, float]
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    max_frames: int

    def lora_for(self, shape: LlamaShape) -> tuple[int, float]:
        """Rank hidden / 32 at the paper's scaling alpha / rank (configs/paper.yaml: 96 and 12 for the 3B)."""
        rank = max(shape.hidden // 32, 1)
        return rank, rank * self.lora_alpha / self.lora_rank


def read_recipe(repo: Path = REPO) -> Recipe:
    """params.yaml with configs/paper.yaml over it, merged and validated by the pipeline's own loader."""
    params = load_params([repo / "params.yaml", repo / "configs" / "paper.yaml"])
    m, t = params["model"], params["train"]
    return Recipe(
        compression=m["compression"],
        projector_hidden=m["projector_hidden"],
        projector_layernorm=m["projector_layernorm"],
        lora_rank=m["lora_rank"],
        lora_alpha=m["lora_alpha"],
        lora_targets=tuple(m["lora_targets"]),
        attn_implementation=m["attn_implementation"],
        prompts=m["prompts"],
        lr=t["lr"],
        betas=tuple(t["betas"]),
        weight_decay=t["weight_decay"],
        grad_clip=t["grad_clip"],
        max_frames=t["max_frames"],
    )


def model_config(
    work: Workload, scale: Scale, recipe: Recipe, lora_rank: int, lora_alpha: float
) -> ModelConfig:
    """The recipe's AVSRModel settings for ``work``'s task: projectors from the encoders' widths, LoRA of
    ``lora_rank`` and ``lora_alpha``."""
    return ModelConfig(
        modalities=tuple(work.rates),
        rates=dict(work.rates),
        input_dims={"audio": scale.whisper.d_model, "video": scale.avhubert.encoder_embed_dim},
        compression=recipe.compression,
        projector_hidden=recipe.projector_hidden,
        projector_layernorm=recipe.projector_layernorm,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=0.0,
        lora_targets=recipe.lora_targets,
        prompt=recipe.prompts[work.task],
    )


def run_configuration(
    llm_name: str,
    work: Workload,
    scale: Scale,
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerFast,
    encoders: Encoders,
    steps: int,
    warmup: int,
    peaks: Mapping[str, float | None],
) -> dict[str, Any]:
    """Build one LLM's AVSRModel for one task on the device and time its training steps.

    Returns:
        the configuration's figures: step times, throughput, memory, FLOPs (analytic and counted by
        torch on the first warm-up step) and MFU against each peak in ``peaks``.
    """
    shape = scale.llms[llm_name]
    rank, alpha = recipe.lora_for(shape)
    with torch.device(scale.device):
        llm = LlamaForCausalLM(llama_config(shape, len(tokenizer), recipe.attn_implementation))
        model = AVSRModel(model_config(work, scale, recipe, rank, alpha), llm, tokenizer).train()
    frozen_llm = sum(p.numel() for p in llm.parameters() if not p.requires_grad)
    built = torch.cuda.memory_allocated() if scale.device == "cuda" else None
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=recipe.lr[work.task],
        betas=recipe.betas,
        weight_decay=recipe.weight_decay,
    )
    words = [f"w{i}" for i in range(work.transcript_tokens)]
    step = functools.partial(
        training_step,
        model,
        encoders,
        make_inputs(work, scale),
        work,
        [" ".join(words)] * work.batch,
        optimizer,
        scale,
        recipe.grad_clip,
    )
    flops = step_flops(
        work,
        shape,
        len(tokenizer),
        rank,
        recipe.projector_hidden,
        recipe.compression,
        scale.whisper,
        scale.avhubert,
    )
    timings, counted_flops = run_steps(step, work, steps, warmup)
    step_s = statistics.median(t.total_s for t in timings)
    achieved = flops["total"] / step_s
    return {
        "status": "ok",
        "lora_rank": rank,
        "lora_alpha": alpha,
        "parameters": {"llm_frozen": frozen_llm, "trainable": model.count_trainable()},
        "step_s_median": step_s,
        "step_s": [t.total_s for t in timings],
        "encoders_s_median": statistics.median(t.encoders_s for t in timings),
        "llm_tokens_per_s": work.batch * work.llm_tokens / step_s,
        "utterances_per_s": work.batch / step_s,
        "memory_after_build_bytes": built,  # encoders, LLM, adapters and projectors
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if scale.device == "cuda" else None,
        "flops": flops,
        "flops_counted_by_torch": counted_flops,
        "achieved_flops_per_s": achieved,
        "mfu_measured_peak": achieved / peaks["measured"],
        "mfu_datasheet_peak": achieved / peaks["datasheet"] if peaks["datasheet"] else None,
    }


# ----- report -------------------------------------------------------------------------------------------
def markdown_table(report: Mapping[str, Any]) -> str:
    peak = report["peak_flops_per_s"]
    datasheet = f"{peak['datasheet'] / 1e12:.0f} TFLOP/s" if peak["datasheet"] else "unknown"
    kind = "tiny smoke shapes, fp32" if report["smoke"] else "paper sizes, bf16 autocast"
    lines = [
        f"# AVSRModel training steps on {report['device_name']} ({kind})",
        "",
        f"torch {report['torch']}, transformers {report['transformers']}, peft {report['peft']}; "
        f"{report['workload']['seconds']} s utterances; matmul peak measured "
        f"{peak['measured'] / 1e12:.3g} TFLOP/s, datasheet {datasheet}. "
        "Assumptions and the FLOP formula: bench/paper_scale_flops.py.",
        "",
        "| LLM | task | rates | batch | LLM tokens/utt. | step ms | encoders ms | LLM tokens/s "
        "| peak GiB | TFLOP/step | MFU (measured peak) | MFU (datasheet) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["configurations"]:
        rates = ",".join(f"{m[0]}{r}" for m, r in row["rates"].items())
        head = (
            f"| {row['llm']} | {row['task']} | {rates} | {row['batch']} | {row['llm_tokens_per_utterance']} "
        )
        if row["status"] != "ok":
            lines.append(head + f"| {row['status']} |" + " |" * 6)
            continue
        memory = row["peak_memory_bytes"]
        mfu_sheet = row["mfu_datasheet_peak"]
        lines.append(
            head + f"| {row['step_s_median'] * 1e3:.1f} | {row['encoders_s_median'] * 1e3:.1f} "
            f"| {row['llm_tokens_per_s']:.0f} | {f'{memory / 2**30:.1f}' if memory else 'n/a'} "
            f"| {row['flops']['total'] / 1e12:.3g} | {row['mfu_measured_peak']:.1%} "
            f"| {f'{mfu_sheet:.1%}' if mfu_sheet else 'n/a'} |"
        )
    return "\n".join(lines) + "\n"


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a comma-separated subset of {list(allowed)}"
            )
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Scale]:
    """The command line and the scale it asks for; exits with a usage error if the scale cannot run here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", type=_choices(list(LLAMA_32)), default=list(LLAMA_32))
    parser.add_argument("--tasks", type=_choices(list(TASK_RATES)), default=list(TASK_RATES))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (the first also counts FLOPs)"
    )
    parser.add_argument("--seconds", type=float, help="length of every utterance (default 6, --smoke 1)")
    parser.add_argument("--out", type=Path, default=Path("results/bench/gpu_paper_scale.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU in fp32 (tests)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    scale = SMOKE if args.smoke else PAPER
    if scale.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or with --smoke for the CPU code path")
    return args, scale


def configuration_row(
    llm_name: str,
    work: Workload,
    scale: Scale,
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerFast,
    encoders: Encoders,
    steps: int,
    warmup: int,
    peaks: Mapping[str, float | None],
) -> dict[str, Any]:
    """The report's row of one configuration: its workload, then its figures, or that it ran out of memory
    (so that the remaining configurations still run)."""
    row = {
        "llm": llm_name,
        "task": work.task,
        "rates": dict(work.rates),
        "batch": work.batch,
        "llm_tokens_per_utterance": work.llm_tokens,
    }
    with memory_freed(scale.device):
        try:
            row |= run_configuration(llm_name, work, scale, recipe, tokenizer, encoders, steps, warmup, peaks)
        except torch.cuda.OutOfMemoryError as error:
            row |= {"status": "out of memory", "error": str(error).splitlines()[0]}
    done = f"{row['step_s_median'] * 1e3:.1f} ms a step" if row["status"] == "ok" else row["status"]
    log.info("%s %s: %s", llm_name, work.task, done)
    return row


def build_report(
    args: argparse.Namespace,
    scale: Scale,
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerFast,
    device_name: str,
    peaks: Mapping[str, float | None],
    workload: Mapping[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON report: versions, peaks, workload, model sizes, recipe and every configuration's row."""
    return {
        "device_name": device_name,
        "smoke": args.smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "git_commit": git_commit(),
        "peak_flops_per_s": peaks,
        "workload": workload,
        "models": {
            "llms": {name: asdict(scale.llms[name]) for name in args.llm},
            "vocab_with_added_tokens": len(tokenizer),
            "whisper_encoder": {
                k: getattr(scale.whisper, k)
                for k in (
                    "d_model",
                    "encoder_layers",
                    "encoder_attention_heads",
                    "encoder_ffn_dim",
                    "num_mel_bins",
                    "max_source_positions",
                )
            },
            "avhubert": asdict(scale.avhubert),
        },
        "recipe": asdict(recipe),
        "configurations": rows,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every requested configuration, write the JSON and Markdown reports, and return the report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args, scale = parse_args(argv)
    recipe = read_recipe()
    device_name = torch.cuda.get_device_name() if scale.device == "cuda" else "CPU"
    peaks = {"measured": measure_matmul_peak(scale), "datasheet": datasheet_peak(device_name)}
    log.info("%s: measured matmul peak %.1f TFLOP/s", device_name, peaks["measured"] / 1e12)
    tokenizer = make_tokenizer(scale.vocab, list(recipe.prompts.values()))
    encoders = build_encoders(scale, args.tasks)
    max_frames = scale.max_frames or recipe.max_frames
    seconds = args.seconds or scale.seconds
    rows = []
    for llm_name in args.llm:
        for task in args.tasks:
            prompt = len(tokenizer(recipe.prompts[task], add_special_tokens=False)["input_ids"])
            work = make_workload(task, scale, seconds, max_frames, prompt)
            rows.append(
                configuration_row(
                    llm_name, work, scale, recipe, tokenizer, encoders, args.steps, args.warmup, peaks
                )
            )
    workload = {
        "seconds": seconds,
        "whisper_window_positions": scale.whisper.max_source_positions,
        "video_frame_size": scale.frame_size,
        "max_frames": max_frames,
        "transcript_tokens_per_second": TRANSCRIPT_TOKENS_PER_SECOND,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    report = build_report(args, scale, recipe, tokenizer, device_name, peaks, workload, rows)
    write_json_atomic(args.out, report)
    write_text_atomic(args.out.with_suffix(".md"), markdown_table(report))
    log.info("wrote %s and %s", args.out, args.out.with_suffix(".md"))
    return report


if __name__ == "__main__":
    main()
