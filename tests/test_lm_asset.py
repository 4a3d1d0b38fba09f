"""The shipped LM: written from a build with pinned hashes, installed only when hashes and settings agree."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from avsr_sinks.config import load_params
from avsr_sinks.lm_asset import install_asset, write_asset
from tests.conftest import REPO


@pytest.fixture()
def asset(tmp_path: Path) -> tuple[dict, Path]:
    params = load_params([REPO / "params.yaml"])
    build = tmp_path / "build"
    build.mkdir()
    (build / "config.json").write_text('{"model_type": "llama"}')
    (build / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "pretrain.json").write_text('{"heldout_perplexity": 12.5}')
    (tmp_path / "pretrain_log.csv").write_text("step,loss\n1,7.0\n")
    write_asset(params, build, tmp_path / "pretrain.json", tmp_path / "pretrain_log.csv", tmp_path / "asset")
    return params, tmp_path


def test_installed_asset_equals_the_build(asset: tuple[dict, Path]) -> None:
    params, root = asset
    install_asset(params, root / "asset", root / "lm", root / "out.json", root / "out.csv")
    assert (root / "lm/model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in (root / "lm").iterdir()) == ["config.json", "model.safetensors"]
    summary = json.loads((root / "out.json").read_text())
    assert summary["heldout_perplexity"] == 12.5 and summary["installed_from"] == str(root / "asset")
    assert (root / "out.csv").read_text() == "step,loss\n1,7.0\n"


def test_changed_file_is_refused(asset: tuple[dict, Path]) -> None:
    params, root = asset
    (root / "asset/model.safetensors").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"model.safetensors: SHA-256 .* differs"):
        install_asset(params, root / "asset", root / "lm", root / "out.json", root / "out.csv")
    assert not (root / "lm").exists()


def test_other_build_settings_are_refused(asset: tuple[dict, Path]) -> None:
    params, root = asset
    changed = copy.deepcopy(params)
    changed["llm"]["pretrain"]["steps"] += 1
    with pytest.raises(ValueError, match="built under other settings \\(pretrain differ"):
        install_asset(changed, root / "asset", root / "lm", root / "out.json", root / "out.csv")
    assert not (root / "lm").exists()


def test_missing_asset_says_how_to_build_one(tmp_path: Path) -> None:
    params = load_params([REPO / "params.yaml"])
    with pytest.raises(FileNotFoundError, match="llm.source: pretrain"):
        install_asset(params, tmp_path / "none", tmp_path / "lm", tmp_path / "s.json", tmp_path / "l.csv")
