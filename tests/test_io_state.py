"""Strict loading of a state dict that names every missing, unexpected and misshapen key."""

from __future__ import annotations

import pytest
import torch

from avsr_sinks.io import load_state_exactly


def test_exact_state_loads_and_any_difference_is_named() -> None:
    module = torch.nn.Linear(3, 2)
    state = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    load_state_exactly(module, state, "ckpt.pt", "a Linear(3, 2)")
    assert torch.equal(module.weight, torch.ones(2, 3))
    bad = {"weight": torch.ones(2, 4), "extra": torch.zeros(1)}
    with pytest.raises(ValueError) as err:
        load_state_exactly(module, bad, "ckpt.pt", "a Linear(3, 2)")
    message = str(err.value)
    assert message.startswith("ckpt.pt: does not match a Linear(3, 2)")
    assert "missing keys ['bias']" in message and "unexpected keys ['extra']" in message
    assert "'weight': ((2, 4), (2, 3))" in message
