from pathlib import Path

import pytest
import yaml

from avsr_sinks.settings.config import ConfigError, load_params
from tests.conftest import REPO

PARAMS = REPO / "params.yaml"


def overlay(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(config: Path) -> None:
    params = load_params([PARAMS, config])
    assert params["grid"]["methods"]


def test_params_yaml_is_valid_alone() -> None:
    assert load_params([PARAMS])["corpus"]["kind"] == "synthetic"


def test_overlay_merges_key_by_key(tmp_path: Path) -> None:
    params = load_params([PARAMS, overlay(tmp_path, "train:\n  epochs: 7\n")])
    assert params["train"]["epochs"] == 7
    assert params["train"]["weight_decay"] == yaml.safe_load(PARAMS.read_text())["train"]["weight_decay"]


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = overlay(tmp_path, "train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        load_params([PARAMS, path])
    assert "train.epoch" in str(err.value) and str(path) in str(err.value)


def test_unknown_top_level_section(tmp_path: Path) -> None:
    path = overlay(tmp_path, "trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian'"):
        load_params([PARAMS, path])


def test_wrong_type_names_key_value_and_file(tmp_path: Path) -> None:
    path = overlay(tmp_path, "decode:\n  beam_size: wide\n")
    with pytest.raises(ConfigError) as err:
        load_params([PARAMS, path])
    message = str(err.value)
    assert "decode.beam_size" in message and "'wide'" in message and str(path) in message


def test_out_of_range_rate(tmp_path: Path) -> None:
    path = overlay(tmp_path, "grid:\n  asr_audio_rates: [0]\n")
    with pytest.raises(ConfigError, match=r"grid\.asr_audio_rates\.0"):
        load_params([PARAMS, path])


def test_unknown_method_is_refused(tmp_path: Path) -> None:
    path = overlay(tmp_path, "grid:\n  methods: [magic]\n")
    with pytest.raises(ConfigError, match="grid.methods.0"):
        load_params([PARAMS, path])


def test_string_boolean_is_refused(tmp_path: Path) -> None:
    # Llama-AVSR's command line read "False" as true; here a string is never a boolean.
    path = overlay(tmp_path, "model:\n  projector_layernorm: 'False'\n")
    with pytest.raises(ConfigError, match="model.projector_layernorm"):
        load_params([PARAMS, path])


def test_missing_overlay_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_params([PARAMS, tmp_path / "nope.yaml"])


def test_invalid_yaml(tmp_path: Path) -> None:
    path = overlay(tmp_path, "train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params([PARAMS, path])


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = overlay(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params([PARAMS, path])


def test_cross_field_rule(tmp_path: Path) -> None:
    path = overlay(tmp_path, "corpus:\n  synth:\n    min_words: 9\n    max_words: 4\n")
    with pytest.raises(ConfigError, match=f"{path}.*min_words"):
        load_params([PARAMS, path])


def test_missing_required_key_in_base(tmp_path: Path) -> None:
    base = yaml.safe_load(PARAMS.read_text())
    del base["decode"]["beam_size"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError, match="beam_size"):
        load_params([path])


def test_yaml_1_2_exponent_floats_read_as_numbers(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("train:\n  grad_clip: 1e1\n  weight_decay: 1E-2\n")
    params = load_params([REPO / "params.yaml", overlay])
    assert params["train"]["grad_clip"] == 10.0 and params["train"]["weight_decay"] == 0.01


def test_plain_booleans_still_read(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("model:\n  projector_layernorm: False\n  match_embedding_norm: true\n")
    params = load_params([REPO / "params.yaml", overlay])
    assert params["model"]["projector_layernorm"] is False and params["model"]["match_embedding_norm"] is True


def test_whole_floats_are_not_integers_but_integers_are_numbers(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("train:\n  grad_clip: 10\n  max_frames: 600.0\n")
    with pytest.raises(ConfigError, match=r"'train\.max_frames' = 600\.0") as err:
        load_params([REPO / "params.yaml", overlay])
    assert "grad_clip" not in str(err.value)  # an integer where a number belongs is fine


def test_a_ctc_warm_up_without_the_ctc_loss_is_refused(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("train:\n  ctc_weight: 0.0\n  ctc_warmup_steps: 10\n")
    with pytest.raises(
        ConfigError, match=rf"{overlay}: key 'train.ctc_warmup_steps' = 10 .*train.ctc_weight = 0"
    ):
        load_params([REPO / "params.yaml", overlay])
