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
    (build / ".snakemake_timestamp").write_text("")  # the workflow's, not the model's
    reports = tmp_path / "reports"
    reports.mkdir()
    for phase, perplexity in (("pretrain", 12.5), ("stretch", 11.5)):
        (reports / f"{phase}.json").write_text(f'{{"heldout_perplexity": {perplexity}}}')
        (reports / f"{phase}_log.csv").write_text(f"step,loss\n1,{perplexity}\n")
    write_asset(params, build, reports, tmp_path / "asset")
    return params, tmp_path


def test_installed_asset_equals_the_build(asset: tuple[dict, Path]) -> None:
    params, root = asset
    install_asset(params, root / "asset", root / "lm", root / "installed")
    assert (root / "lm/model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in (root / "lm").iterdir()) == ["config.json", "model.safetensors"]
    for phase, perplexity in (("pretrain", 12.5), ("stretch", 11.5)):
        summary = json.loads((root / f"installed/{phase}.json").read_text())
        assert summary["heldout_perplexity"] == perplexity
        assert summary["installed_from"] == str(root / "asset")
        assert (root / f"installed/{phase}_log.csv").read_text() == f"step,loss\n1,{perplexity}\n"


def test_build_without_its_stretch_report_is_refused(tmp_path: Path) -> None:
    params = load_params([REPO / "params.yaml"])
    build = tmp_path / "build"
    build.mkdir()
    (build / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "pretrain.json").write_text("{}")
    (tmp_path / "pretrain_log.csv").write_text("step,loss\n")
    with pytest.raises(FileNotFoundError, match=r"stretch.json: report of the LM build is missing"):
        write_asset(params, build, tmp_path, tmp_path / "asset")
    assert not (tmp_path / "asset").exists()


def test_changed_file_is_refused(asset: tuple[dict, Path]) -> None:
    params, root = asset
    (root / "asset/model.safetensors").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"model.safetensors: SHA-256 .* differs"):
        install_asset(params, root / "asset", root / "lm", root / "installed")
    assert not (root / "lm").exists()


def test_other_build_settings_are_refused(asset: tuple[dict, Path]) -> None:
    params, root = asset
    changed = copy.deepcopy(params)
    changed["llm"]["pretrain"]["steps"] += 1
    with pytest.raises(ValueError, match="built under other settings \\(pretrain differ"):
        install_asset(changed, root / "asset", root / "lm", root / "installed")
    assert not (root / "lm").exists()


def test_missing_asset_says_how_to_build_one(tmp_path: Path) -> None:
    params = load_params([REPO / "params.yaml"])
    with pytest.raises(FileNotFoundError, match="llm.source: pretrain"):
        install_asset(params, tmp_path / "none", tmp_path / "lm", tmp_path / "installed")
