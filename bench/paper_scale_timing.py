"""Measurement for bench/gpu_paper_scale.py: the matmul peak, synchronised training steps (the first
under torch's FLOP counter) and the memory freed between configurations."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from paper_scale_flops import CPU_ATTENTION_FLOPS, Scale, Workload
from paper_scale_models import Encoders, encode
from torch.utils.flop_counter import FlopCounterMode

from avsr_sinks.modeling.avsr_model import AVSRModel

# Dense bf16 tensor-core peaks from NVIDIA's datasheets, by a piece of torch.cuda.get_device_name().
DATASHEET_BF16_PEAKS = (
    ("H200", 989e12),
    ("H100 80GB HBM3", 989e12),  # the SXM card's name
    ("H100 SXM", 989e12),
    ("H100 PCIe", 756e12),
    ("A100", 312e12),
)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_matmul_peak(scale: Scale, repeats: int = 10) -> float:
    """FLOP/s of the fastest of ``repeats`` large square matmuls in the step's compute dtype (bf16 on the
    GPU, fp32 on the CPU); the fastest, so that a moment of contention does not lower the peak."""
    dtype = torch.bfloat16 if scale.autocast else torch.float32
    n = scale.matmul_size
    a, b = (torch.randn(n, n, device=scale.device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    fastest = math.inf
    for _ in range(repeats):
        _synchronize(scale.device)
        start = time.perf_counter()
        a @ b
        _synchronize(scale.device)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * n**3 / fastest


def datasheet_peak(device_name: str) -> float | None:
    return next((peak for piece, peak in DATASHEET_BF16_PEAKS if piece in device_name), None)


@dataclass
class StepTiming:
    encoders_s: float
    total_s: float
    llm_tokens: int


def training_step(
    model: AVSRModel,
    encoders: Encoders,
    inputs: Mapping[str, torch.Tensor],
    work: Workload,
    transcripts: list[str],
    optimizer: torch.optim.Optimizer,
    scale: Scale,
    grad_clip: float,
) -> StepTiming:
    """One optimisation step, synchronised at its start, after the encoders and at its end."""
    precision = (
        torch.autocast(scale.device, dtype=torch.bfloat16) if scale.autocast else contextlib.nullcontext()
    )
    _synchronize(scale.device)
    start = time.perf_counter()
    with precision:
        features = encode(encoders, inputs, work)
        _synchronize(scale.device)
        encoded = time.perf_counter()
        out, batch = model(features, transcripts)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _synchronize(scale.device)
    end = time.perf_counter()
    return StepTiming(encoded - start, end - start, int(batch.attention_mask.sum()))


@contextlib.contextmanager
def memory_freed(device: str) -> Iterator[None]:
    """Free what a configuration left (also after an out-of-memory error) and reset the peak counter."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_steps(
    step: Callable[[], StepTiming], work: Workload, steps: int, warmup: int
) -> tuple[list[StepTiming], int]:
    """Run the warm-up steps, the first under torch's FLOP counter, then time ``steps`` steps; fail if the
    model's input layout does not have the token count the analytic FLOPs assume.

    Returns:
        the timed steps and the FLOPs torch counted on the first warm-up step.
    """
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        first = step()
    if first.llm_tokens != work.batch * work.llm_tokens:
        raise RuntimeError(
            f"the model built {first.llm_tokens} LLM input tokens, the FLOP count assumes "
            f"{work.batch} x {work.llm_tokens}: the input layout and Workload.llm_tokens disagree"
        )
    for _ in range(warmup - 1):
        step()
    return [step() for _ in range(steps)], counter.get_total_flops()
