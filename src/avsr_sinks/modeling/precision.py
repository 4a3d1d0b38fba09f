"""bf16 autocast on a CPU: the params' setting (true, false or auto) resolved on the machine that runs.

A CPU without native bf16 arithmetic emulates it: on a 2-core AVX2 EPYC a LoRA step of SmolLM2-135M took
80 s under bf16 autocast against 3.7 s in float32, where an avx512_bf16 CPU halves the float32 step.
``auto`` therefore turns autocast on only where the CPU has the instructions, so that the same params
run at the best speed on either machine (the results differ by about a point of WER; docs/recipe-smollm2.md).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

AUTO = "auto"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (x86: avx512_bf16 or AMX tiles)."""
    # torch offers no public query; these are the CPU feature checks its own kernels dispatch on.
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_bf16_autocast(setting: bool | str) -> bool:
    """Whether to run under bf16 autocast on this CPU for a params setting of true, false or auto."""
    if not (isinstance(setting, bool) or setting == AUTO):
        raise ValueError(f"autocast_bf16_on_cpu must be true, false or {AUTO!r}, got {setting!r}")
    native = cpu_has_native_bf16()
    if setting == AUTO:
        return native
    if setting and not native:
        log.warning(
            "autocast_bf16_on_cpu is true, but this CPU has no native bf16 (avx512_bf16 or AMX): "
            "it will run many times slower than float32 (set it to %s to choose per machine)",
            AUTO,
        )
    return bool(setting)
