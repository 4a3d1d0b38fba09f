"""bf16 autocast on a CPU: ``auto`` follows the CPU's native bf16 support, true and false force it, and the
training and the evaluation both resolve the params' setting on the machine that runs them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from avsr_sinks.modeling import precision
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import resolve_run
from avsr_sinks.training.from_spec import train_config
from avsr_sinks.training.train import mixed_precision
from tests.conftest import REPO


@pytest.fixture(params=[True, False], ids=["native-bf16", "emulated-bf16"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_auto_follows_the_cpu_and_true_or_false_force_it(native: bool) -> None:
    assert precision.cpu_bf16_autocast("auto") is native
    assert precision.cpu_bf16_autocast(True) is True
    assert precision.cpu_bf16_autocast(False) is False


def test_forcing_bf16_on_a_cpu_without_it_warns(caplog: pytest.LogCaptureFixture, native: bool) -> None:
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        precision.cpu_bf16_autocast(True)
    assert ("no native bf16" in caplog.text) is not native


@pytest.mark.parametrize("setting", [1, 0, "yes", None])
def test_a_setting_other_than_true_false_or_auto_is_refused(setting: object) -> None:
    with pytest.raises(ValueError, match="true, false or 'auto'"):
        precision.cpu_bf16_autocast(setting)  # type: ignore[arg-type]


def test_the_default_trains_in_float32_and_decodes_under_autocast_only_on_a_cpu_with_native_bf16(
    native: bool, tmp_path: Path
) -> None:
    spec = resolve_run(load_params([REPO / "params.yaml"]), parse_name("asr-a4-baseline-s0"))
    assert spec.train.autocast_bf16_on_cpu is False
    assert train_config(spec).autocast_bf16_on_cpu is False
    assert spec.decode.autocast_bf16_on_cpu == "auto"
    assert precision.cpu_bf16_autocast(spec.decode.autocast_bf16_on_cpu) is native
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("train:\n  autocast_bf16_on_cpu: auto\n")
    chosen = resolve_run(load_params([REPO / "params.yaml", overlay]), parse_name("asr-a4-baseline-s0"))
    assert train_config(chosen).autocast_bf16_on_cpu is native


@pytest.mark.parametrize(
    ("overlays", "on_gpu", "expected"),
    [
        ([], True, "no"),  # the default trains a GPU in float32, as the CPU
        ([], False, "no"),
        (["configs/paper.yaml"], True, "bf16"),  # the paper's recipe: bf16 on a GPU
        (["configs/paper.yaml"], False, "no"),  # ... and its CPU setting stays its own
    ],
)
def test_the_training_precision_follows_the_setting_of_the_device_it_trains_on(
    overlays: list[str], on_gpu: bool, expected: str
) -> None:
    params = load_params([REPO / "params.yaml", *(REPO / o for o in overlays)])
    spec = resolve_run(params, parse_name("asr-a4-baseline-s0"))
    assert mixed_precision(train_config(spec), on_gpu=on_gpu) == expected
