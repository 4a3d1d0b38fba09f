"""A missing pretrained-model folder stops the loader with a message that says what to put where."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsr_sinks.encoders.whisper import load_audio_encoder
from avsr_sinks.io import require_model_folder
from avsr_sinks.modeling.llm import load_llm


def test_missing_whisper_names_the_model_its_files_and_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "whisper-medium.en"
    with pytest.raises(FileNotFoundError) as err:
        load_audio_encoder(folder, window_seconds=30, hub_id="openai/whisper-medium.en")
    assert str(err.value) == (
        f"audio_encoder.path: {folder} does not exist: put the Hugging Face folder of "
        "openai/whisper-medium.en there (config.json, model.safetensors, preprocessor_config.json) "
        "or set audio_encoder.path"
    )


def test_missing_llm_names_the_model_its_files_and_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "Llama-3.2-3B"
    folder.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_llm(folder, hub_id="meta-llama/Llama-3.2-3B")
    assert str(err.value) == (
        f"llm.path: {folder} has no config.json: put the Hugging Face folder of meta-llama/Llama-3.2-3B "
        "there (config.json, model.safetensors or its shards, tokenizer.json, tokenizer_config.json) "
        "or set llm.path"
    )


def test_without_a_hub_id_the_message_names_the_rule_that_builds_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"audio_encoder.path: .*/convert_whisper.py --out-dir"):
        load_audio_encoder(tmp_path / "whisper-tiny.en", window_seconds=10)
    with pytest.raises(FileNotFoundError, match=r"llm.path: .* run the pipeline's install_bundled_llm rule"):
        load_llm(tmp_path / "lm")


def test_a_folder_with_config_json_passes(tmp_path: Path) -> None:
    def check() -> None:
        require_model_folder(tmp_path, "llm.path", ["config.json"], "org/model", otherwise="unused")

    # config.json is what makes the folder pass: the same folder is refused without it, or with a
    # directory of that name.
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        check()
    (tmp_path / "config.json").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        check()
    (tmp_path / "config.json").rmdir()
    (tmp_path / "config.json").write_text("{}")
    assert check() is None
