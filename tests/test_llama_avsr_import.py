"""Importing the Llama-AVSR authors' checkpoints: synthetic files with their key layout, tiny shapes.

The reference forward is computed from the source tensors alone, the way their code runs them: LoRA as
``W + alpha / reduction_lora * up @ down`` merged into the base weights, their projector and compression,
and the LLM's tables after their add_special_tokens + resize_token_embeddings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from avsr_sinks.encoders.avhubert import AVHubertConfig, AVHubertModel, add_lora
from avsr_sinks.importers.llama_avsr import import_llama_avsr, requested_experiment
from avsr_sinks.importers.llama_avsr_checkpoint import (
    AUTHORS_SPECIAL_TOKENS,
    ImportRefusedError,
    infer_config,
    read_checkpoint,
)
from avsr_sinks.modeling.checkpoints import VIDEO_ENCODER_LORA, load_checkpoint
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import resolve_run
from tests.conftest import REPO

SENTENCES = ["the cat sat on the mat", "a dog runs in the park", "we will go home soon"] * 4
WIDTH, PROJECTOR_HIDDEN, RANK, SCALING = 12, 20, 4, 0.125  # their LLM LoRA scaling alpha / reduction_lora
AVHUBERT = AVHubertConfig(
    encoder_embed_dim=WIDTH,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_ffn_embed_dim=24,
    conv_pos=4,
    conv_pos_groups=4,
    audio_feat_dim=8,
)


def _write_llm(folder: Path, hidden: int) -> Path:
    """A randomly initialised Llama with grouped-query attention, untied tables, and a tokenizer without
    Llama-AVSR's special tokens (as Llama 3's)."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(
        SENTENCES,
        trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_llm(tmp_path_factory.mktemp("llm") / "llm", hidden=32)


@pytest.fixture(scope="module")
def base_params() -> dict:
    return load_params([REPO / "params.yaml"])


def _params(base: dict, llm_dir: Path, compression: str, layernorm: bool) -> dict:
    params = copy.deepcopy(base)
    params["llm"].update(source="local", path=str(llm_dir), hub_id=None)
    params["model"].update(
        compression=compression,
        projector_hidden=PROJECTOR_HIDDEN,
        projector_layernorm=layernorm,
        match_embedding_norm=False,
        lora_rank=RANK,
        lora_alpha=SCALING * RANK,
        lora_dropout=0.0,
        lora_targets=["q_proj", "v_proj"],
    )
    params["train"].update(ctc_weight=0.0, ctc_warmup_steps=0, warm_start={"asr": [], "vsr": [], "avsr": []})
    return params


def _authors_tokenizer(llm_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    tokenizer.add_special_tokens(
        {
            "pad_token": AUTHORS_SPECIAL_TOKENS[0],
            "additional_special_tokens": list(AUTHORS_SPECIAL_TOKENS[1:]),
        }
    )
    return tokenizer


def authors_state(
    llm_dir: Path,
    rates: dict[str, int],
    compression: str,
    layernorm: bool,
    video_lora_rank: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """The state dict of their AVSR_LLMs: frozen LLM, Whisper and AV-HuBERT weights, and the trained ones."""
    llm = AutoModelForCausalLM.from_pretrained(llm_dir)
    state = {f"llm.{k}": v.clone() for k, v in llm.state_dict().items()}
    hidden, added = llm.config.hidden_size, len(AUTHORS_SPECIAL_TOKENS)
    for key in ("llm.model.embed_tokens.weight", "llm.lm_head.weight"):
        state[key] = torch.cat([state[key], torch.randn(added, hidden)])  # their resize: new random rows
    kv = llm.config.num_key_value_heads * hidden // llm.config.num_attention_heads
    for i in range(llm.config.num_hidden_layers):
        for letter, out in (("Q", hidden), ("V", kv)):
            state[f"llm.model.layers.{i}.self_attn.lora_down_{letter}.weight"] = 0.3 * torch.randn(
                RANK, hidden
            )
            state[f"llm.model.layers.{i}.self_attn.lora_up_{letter}.weight"] = 0.3 * torch.randn(out, RANK)
    for m, rate in rates.items():
        d_in = WIDTH * rate if compression == "stack" else WIDTH
        state[f"{m}_proj.0.weight"] = 0.3 * torch.randn(PROJECTOR_HIDDEN, d_in)
        state[f"{m}_proj.0.bias"] = 0.1 * torch.randn(PROJECTOR_HIDDEN)
        state[f"{m}_proj.2.weight"] = 0.3 * torch.randn(hidden, PROJECTOR_HIDDEN)
        state[f"{m}_proj.2.bias"] = 0.1 * torch.randn(hidden)
        if layernorm:
            state[f"{m}_proj.3.weight"] = 1 + 0.1 * torch.randn(hidden)
            state[f"{m}_proj.3.bias"] = 0.1 * torch.randn(hidden)
    if "audio" in rates:  # a few of Whisper's encoder tensors
        state["audio_encoder.conv1.weight"] = torch.randn(WIDTH, 4, 3)
        state["audio_encoder.layer_norm.weight"] = torch.ones(WIDTH)
    if "video" in rates:
        state |= {f"video_encoder.{k}": v for k, v in AVHubertModel(AVHUBERT).state_dict().items()}
        for i in range(AVHUBERT.encoder_layers if video_lora_rank else 0):
            for letter in "QV":
                prefix = f"video_encoder.encoder.layers.{i}.self_attn"
                state[f"{prefix}.lora_down_{letter}.weight"] = 0.3 * torch.randn(video_lora_rank, WIDTH)
                state[f"{prefix}.lora_up_{letter}.weight"] = 0.3 * torch.randn(WIDTH, video_lora_rank)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def save_authors_checkpoint(path: Path, state: dict, hyper_parameters: dict | None = None) -> Path:
    """A released .pth (flat state dict), or with hyper-parameters an epoch=N.ckpt of Lightning."""
    if hyper_parameters is None:
        torch.save(state, path)
    else:
        lightning = {
            "epoch": 9,
            "global_step": 100,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "hyper_parameters": hyper_parameters,
            "hparams_name": "args",
        }
        torch.save(lightning, path)
    return path


def reference_logits(
    llm_dir: Path, state: dict, features: dict, rates: dict, compression: str, prompt: str, transcript: str
) -> torch.Tensor:
    """Their forward, from the source tensors: audio block, then video block, then prompt and transcript."""
    tokenizer = _authors_tokenizer(llm_dir)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    llm.resize_token_embeddings(len(tokenizer))
    state = {k: v.float() for k, v in state.items()}
    with torch.no_grad():
        # The base rows are the folder's (the import checks them); the appended rows are the checkpoint's.
        added = slice(llm.config.vocab_size - len(AUTHORS_SPECIAL_TOKENS), None)
        llm.model.embed_tokens.weight[added] = state["llm.model.embed_tokens.weight"][added]
        llm.lm_head.weight[added] = state["llm.lm_head.weight"][added]
        for i, layer in enumerate(llm.model.layers):
            for letter, projection in (("Q", layer.self_attn.q_proj), ("V", layer.self_attn.v_proj)):
                up = state[f"llm.model.layers.{i}.self_attn.lora_up_{letter}.weight"]
                down = state[f"llm.model.layers.{i}.self_attn.lora_down_{letter}.weight"]
                projection.weight += SCALING * up @ down
    embed = llm.get_input_embeddings()

    def tokens(ids: list[int]) -> torch.Tensor:
        return embed(torch.tensor(ids))

    def projected(m: str, frames: torch.Tensor) -> torch.Tensor:
        windows = frames.reshape(-1, rates[m], frames.shape[1])  # their AvgPool1d / view: whole windows
        x = windows.mean(1) if compression == "avgpool" else windows.flatten(1)
        x = F.linear(
            F.relu(F.linear(x, state[f"{m}_proj.0.weight"], state[f"{m}_proj.0.bias"])),
            state[f"{m}_proj.2.weight"],
            state[f"{m}_proj.2.bias"],
        )
        if f"{m}_proj.3.weight" in state:
            x = F.layer_norm(x, x.shape[-1:], state[f"{m}_proj.3.weight"], state[f"{m}_proj.3.bias"])
        return x

    pieces = [tokens([tokenizer.bos_token_id])]
    for m in ("audio", "video"):
        if m in features:
            opening, closing = tokenizer.convert_tokens_to_ids([f"<{m}>", f"</{m}>"])
            pieces += [tokens([opening]), projected(m, features[m]), tokens([closing])]
    pieces.append(tokens(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
    pieces.append(
        tokens(tokenizer(transcript, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    )
    with torch.no_grad():
        return llm(inputs_embeds=torch.cat(pieces)[None]).logits[0]


@pytest.mark.parametrize(
    ("name", "compression", "layernorm", "lightning", "dtype"),
    [
        ("asr-a4-baseline-s0", "avgpool", True, False, torch.float32),
        ("avsr-a2v3-baseline-s0", "stack", False, True, torch.bfloat16),
    ],
)
def test_imported_checkpoint_reproduces_the_authors_forward(
    tmp_path: Path,
    llm_dir: Path,
    base_params: dict,
    name: str,
    compression: str,
    layernorm: bool,
    lightning: bool,
    dtype: torch.dtype,
) -> None:
    experiment = parse_name(name)
    rates = {m: r for m, r in (("audio", experiment.audio_rate), ("video", experiment.video_rate)) if r}
    params = _params(base_params, llm_dir, compression, layernorm)
    state = authors_state(llm_dir, rates, compression, layernorm, dtype=dtype)
    hyper_parameters = (
        {
            "modality": "audiovisual",
            "downsample_ratio_audio": 2,
            "downsample_ratio_video": 3,
            "compression_mode": "stack",
            "reduction_lora": 8,
            "alpha": 1,
            "prompt_audiovisual": params["model"]["prompts"]["avsr"],
            "audio_encoder_name": "openai/whisper-medium.en",
        }
        if lightning
        else None
    )
    source_path = save_authors_checkpoint(tmp_path / "source.pt", state, hyper_parameters)
    source = read_checkpoint(source_path)
    inferred = import_llama_avsr(source, tmp_path / "imported", resolve_run(params, experiment), llm_dir)
    assert inferred.compression == compression and inferred.projector_layernorm == layernorm
    assert inferred.llm_lora.rank == RANK and inferred.llm_lora.projections == ("q_proj", "v_proj")

    record = json.loads((tmp_path / "imported" / "experiment.json").read_text())
    assert record["imported_from"]["sha256"] == hashlib.sha256(source_path.read_bytes()).hexdigest()
    assert record["experiment"] == name and "video_encoder_lora" not in record
    model = load_checkpoint(
        tmp_path / "imported", resolve_run(params, experiment), {m: WIDTH for m in rates}
    ).eval()
    features = {m: torch.randn(6 * rate, WIDTH) for m, rate in rates.items()}  # whole windows only
    transcript = "the cat sat on the mat"
    with torch.no_grad():
        batch = model.assemble([features], [transcript])
        logits = model.llm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask).logits
    prompt = params["model"]["prompts"][experiment.task]
    expected = reference_logits(llm_dir, state, features, rates, compression, prompt, transcript)
    torch.testing.assert_close(logits[0], expected, rtol=1e-4, atol=1e-4)


def test_video_encoder_lora_is_written_and_evaluation_refuses_it(
    tmp_path: Path, llm_dir: Path, base_params: dict
) -> None:
    params = _params(base_params, llm_dir, "avgpool", True)
    state = authors_state(llm_dir, {"video": 5}, "avgpool", True, video_lora_rank=3)
    source = read_checkpoint(save_authors_checkpoint(tmp_path / "vsr.pth", state))
    experiment = parse_name("vsr-v5-baseline-s0")
    inferred = import_llama_avsr(source, tmp_path / "imported", resolve_run(params, experiment), llm_dir)
    assert inferred.video_encoder_lora is not None and inferred.video_encoder_lora.rank == 3
    record = json.loads((tmp_path / "imported" / "experiment.json").read_text())["video_encoder_lora"]
    assert record["alpha"] == 2 * 3 and record["targets"] == ["q_proj", "v_proj"]

    base = {
        k.removeprefix("video_encoder."): v
        for k, v in state.items()
        if k.startswith("video_encoder.") and "lora_" not in k
    }
    reference, adapted = AVHubertModel(AVHUBERT), AVHubertModel(AVHUBERT)
    reference.load_state_dict(base)
    adapted.load_state_dict(base)
    add_lora(adapted, rank=record["rank"], alpha=record["alpha"])
    adapters = load_file(str(tmp_path / "imported" / VIDEO_ENCODER_LORA))
    missing, unexpected = adapted.load_state_dict(adapters, strict=False)
    assert not unexpected and not any("lora_" in k for k in missing)
    with torch.no_grad():
        for i, layer in enumerate(reference.encoder.layers):
            for letter, projection in (("Q", layer.self_attn.q_proj), ("V", layer.self_attn.v_proj)):
                prefix = f"video_encoder.encoder.layers.{i}.self_attn"
                projection.weight += (
                    2
                    * state[f"{prefix}.lora_up_{letter}.weight"]
                    @ state[f"{prefix}.lora_down_{letter}.weight"]
                )
        x = torch.randn(1, 7, WIDTH)
        torch.testing.assert_close(adapted.encoder(x, None), reference.encoder(x, None))

    with pytest.raises(ValueError, match="adapts the video encoder with LoRA"):
        load_checkpoint(tmp_path / "imported", resolve_run(params, experiment), {"video": WIDTH})


@pytest.mark.parametrize(
    ("case", "evidence"),
    [
        ("llm with another hidden size", ["lora_down_Q.weight has shape (4, 32)", "needs (4, 16)"]),
        ("rate contradicts stacking", ["audio_proj.0.weight has shape (20, 24)", "needs (20, 48)"]),
        ("missing projector", ["avsr-a2v3-baseline-s0 reads video features", "no video_proj.0.weight"]),
        ("params without layernorm", ["model.projector_layernorm is False", "has True"]),
        ("rescaled tokens", ["model.match_embedding_norm must be false"]),
        ("lightning rate", ["hyper_parameters.downsample_ratio_audio = 4", "asks for 8"]),
        (
            "another base llm",
            ["llm.model.layers.0.self_attn.q_proj.weight (32, 32) differs", "another base LLM"],
        ),
    ],
)
def test_contradictions_are_refused_naming_file_key_and_shapes(
    tmp_path: Path, llm_dir: Path, base_params: dict, case: str, evidence: list[str]
) -> None:
    compression = "stack" if case == "rate contradicts stacking" else "avgpool"
    state = authors_state(llm_dir, {"audio": 2}, compression, layernorm=True)
    params = _params(base_params, llm_dir, compression, layernorm=case != "params without layernorm")
    experiment, target_llm, hyper_parameters = parse_name("asr-a2-baseline-s0"), llm_dir, None
    if case == "llm with another hidden size":
        target_llm = _write_llm(tmp_path / "small-llm", hidden=16)
    elif case == "rate contradicts stacking":
        experiment = parse_name("asr-a4-baseline-s0")
    elif case == "missing projector":
        experiment = parse_name("avsr-a2v3-baseline-s0")
    elif case == "lightning rate":
        experiment, hyper_parameters = parse_name("asr-a8-baseline-s0"), {"downsample_ratio_audio": 4}
    elif case == "another base llm":
        state["llm.model.layers.0.self_attn.q_proj.weight"] += 0.1
    elif case == "rescaled tokens":
        params["model"]["match_embedding_norm"] = True
    path = save_authors_checkpoint(tmp_path / "source.pth", state, hyper_parameters)
    with pytest.raises(ImportRefusedError) as refusal:
        import_llama_avsr(
            read_checkpoint(path), tmp_path / "out", resolve_run(params, experiment), target_llm
        )
    message = str(refusal.value)
    assert str(path) in message and all(e in message for e in evidence), message
    assert not (tmp_path / "out").exists()


def test_requested_experiment_takes_stacking_rates_and_asks_for_pooled_ones(
    tmp_path: Path, llm_dir: Path
) -> None:
    stacked = save_authors_checkpoint(
        tmp_path / "stack.pth", authors_state(llm_dir, {"audio": 3}, "stack", False)
    )
    inferred = infer_config(read_checkpoint(stacked))
    assert inferred.stacking_rates == {"audio": 3}
    assert requested_experiment(None, None, None, inferred).name == "asr-a3-baseline-s0"
    with pytest.raises(ImportRefusedError, match="--audio-rate 4 contradicts --experiment asr-a3"):
        requested_experiment("asr-a3-baseline-s0", 4, None, inferred)
    pooled = save_authors_checkpoint(
        tmp_path / "pool.pth", authors_state(llm_dir, {"audio": 3}, "avgpool", True)
    )
    with pytest.raises(ImportRefusedError, match="give --audio-rate"):
        requested_experiment(None, None, None, infer_config(read_checkpoint(pooled)))


def test_command_line_prints_the_inferred_configuration(
    tmp_path: Path, llm_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "workflow_scripts"))
    import import_llama_avsr

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "llm": {"source": "local", "path": str(llm_dir), "hub_id": None},
                "model": {
                    "compression": "avgpool",
                    "projector_hidden": PROJECTOR_HIDDEN,
                    "projector_layernorm": True,
                    "match_embedding_norm": False,
                    "lora_rank": RANK,
                    "lora_alpha": SCALING * RANK,
                    "lora_targets": ["q_proj", "v_proj"],
                },
                "train": {
                    "ctc_weight": 0.0,
                    "ctc_warmup_steps": 0,
                    "warm_start": {"asr": [], "vsr": [], "avsr": []},
                },
            }
        )
    )
    source = save_authors_checkpoint(
        tmp_path / "asr.pth", authors_state(llm_dir, {"audio": 16}, "avgpool", True)
    )
    argv = ["import_llama_avsr.py", "--params", str(REPO / "params.yaml"), str(overlay)]
    argv += ["--checkpoint", str(source), "--out", str(tmp_path / "out"), "--audio-rate", "16"]
    monkeypatch.setattr(sys, "argv", argv)
    import_llama_avsr.main()
    printed = capsys.readouterr().out
    assert "LLM LoRA: rank 4 on q_proj, v_proj" in printed and "LayerNorm on" in printed
    assert (
        json.loads((tmp_path / "out" / "experiment.json").read_text())["experiment"] == "asr-a16-baseline-s0"
    )
