"""The raw inputs or outputs of a model's submodules during one forward pass, read by hooks.

transformers' ``output_hidden_states`` returns the last decoder layer's output after the model's final
norm, which bounds every entry by about sqrt(hidden) x the largest norm weight: a massive activation in
the last layer would read as an ordinary value there. Sun et al. ("Massive Activations in Large Language
Models") measure each decoder layer's own output, so the analysis reads them through hooks instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


@contextmanager
def recorded_outputs(modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Inside the block, ``outputs[i]`` is the detached output of ``modules[i]``'s latest call (the first
    element where a module returns a tuple); None until it runs. Hooks are removed on exit, error or not."""
    with _recorded(modules, inputs=False) as outputs:
        yield outputs


@contextmanager
def recorded_inputs(modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """As :func:`recorded_outputs`, for the first positional argument of each module's latest call."""
    with _recorded(modules, inputs=True) as inputs:
        yield inputs


@contextmanager
def _recorded(modules: Sequence[nn.Module], inputs: bool) -> Iterator[list[torch.Tensor | None]]:
    values: list[torch.Tensor | None] = [None] * len(modules)

    def store(index: int):
        def before(module: nn.Module, args: Any) -> None:
            values[index] = args[0].detach()

        def after(module: nn.Module, args: Any, output: Any) -> None:
            values[index] = (output[0] if isinstance(output, tuple) else output).detach()

        return before if inputs else after

    handles = [
        (module.register_forward_pre_hook if inputs else module.register_forward_hook)(store(i))
        for i, module in enumerate(modules)
    ]
    try:
        yield values
    finally:
        for handle in handles:
            handle.remove()


def decoder_layers(model: nn.Module) -> Sequence[nn.Module]:
    """The decoder layers of a transformers causal LM (or of the base model inside a PEFT wrapper)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder().layers
