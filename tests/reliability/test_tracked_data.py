"""Faults in tracked data: a DVC-tracked feature shard or checkpoint changed on disk is caught by
`dvc status` and, before it is used, by the loader, whose message says how to restore it; `dvc checkout`
then brings back the exact content."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avsr_sinks.features.store import FeatureStore, extract_features
from avsr_sinks.io import load_safetensors


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture()
def tracked(tmp_path: Path) -> Path:
    """A git + DVC repository tracking a feature cache and a checkpoint folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    uids = [f"u{i}" for i in range(5)]
    rng = np.random.default_rng(0)
    inputs = {uid: rng.standard_normal((10 + i, 8)).astype(np.float32) for i, uid in enumerate(uids)}
    extract_features(
        uids,
        inputs.__getitem__,
        lambda batch: [torch.from_numpy(x) for x in batch],
        repo / "features",
        {"encoder": {"name": "identity"}, "frame_rate": 25},
        batch_size=2,
    )
    (repo / "checkpoint").mkdir()
    save_file(
        {"projector.weight": torch.arange(64.0).reshape(8, 8)}, str(repo / "checkpoint/model.safetensors")
    )
    dvc(repo, "add", "-q", "features", "checkpoint")
    return repo


@pytest.mark.slow
def test_altered_feature_shard_is_detected_and_restored(tracked: Path) -> None:
    before = FeatureStore(tracked / "features")
    shard = tracked / "features" / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert "modified" in dvc(tracked, "status", "features.dvc").stdout
    with pytest.raises(
        ValueError, match=rf"{shard}: differs from its SHA-256 .*dvc checkout {tracked / 'features'}"
    ):
        FeatureStore(tracked / "features")
    dvc(tracked, "checkout", "-q", "--force", "features.dvc")
    after = FeatureStore(tracked / "features")
    assert all(torch.equal(before[uid], after[uid]) for uid in before.uids)
    assert "up to date" in dvc(tracked, "status").stdout


@pytest.mark.slow
def test_truncated_checkpoint_is_detected_and_restored(tracked: Path) -> None:
    weights = tracked / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert "modified" in dvc(tracked, "status", "checkpoint.dvc").stdout
    # The loader behind a checkpoint's message (the evaluate case of the catalogue shows the whole message).
    with pytest.raises(
        ValueError, match=rf"{weights}: not a readable safetensors file .*truncated or corrupt"
    ):
        load_safetensors(weights, "restore it")
    dvc(tracked, "checkout", "-q", "--force", "checkpoint.dvc")
    assert torch.equal(load_safetensors(weights, "")["projector.weight"], torch.arange(64.0).reshape(8, 8))
