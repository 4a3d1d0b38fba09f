"""The randomly initialised models and inputs of bench/gpu_paper_scale.py, built directly on the device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from paper_scale_flops import TASK_RATES, LlamaShape, Scale, Workload
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avsr_sinks.encoders.avhubert import AVHubertModel
from avsr_sinks.modeling.llm import SPECIAL_TOKENS


def make_tokenizer(vocab: int, prompts: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of ``vocab`` entries (the prompts' words, fillers ``w<i>``, Llama 3's BOS and
    EOS), then Llama-AVSR's pad and delimiters added as ``load_llm`` adds them to Llama 3.2's."""
    words = sorted({w for p in prompts for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(p)})
    entries = ["<unk>", *words]
    entries += [f"w{i}" for i in range(vocab - len(entries) - 2)]
    entries += ["<|begin_of_text|>", "<|end_of_text|>"]
    model = models.WordLevel({token: i for i, token in enumerate(entries)}, unk_token="<unk>")
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    )
    delimiters = [t for m in ("audio", "video") for t in SPECIAL_TOKENS[m]]
    tokenizer.add_special_tokens(
        {"pad_token": SPECIAL_TOKENS["pad"], "additional_special_tokens": delimiters}
    )
    return tokenizer


def llama_config(shape: LlamaShape, vocab: int, attn_implementation: str) -> LlamaConfig:
    """Llama 3.2's hyper-parameters (tied embeddings, rope theta 500000 with llama3 scaling)."""
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=131_072,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
        attn_implementation=attn_implementation,
    )


@dataclass
class Encoders:
    whisper: WhisperEncoder | None
    avhubert: AVHubertModel | None


def build_encoders(scale: Scale, tasks: Sequence[str]) -> Encoders:
    """The frozen encoders the tasks need, built and initialised on the device itself."""
    modalities = {m for task in tasks for m in TASK_RATES[task]}
    with torch.device(scale.device):
        whisper = WhisperEncoder(scale.whisper) if "audio" in modalities else None
        avhubert = AVHubertModel(scale.avhubert) if "video" in modalities else None
    for encoder in (whisper, avhubert):
        if encoder is not None:
            encoder.eval().requires_grad_(False)
    return Encoders(whisper, avhubert)


def make_inputs(work: Workload, scale: Scale) -> dict[str, torch.Tensor]:
    """Random encoder inputs of the real shapes, made once on the device, outside the timed steps."""
    b, side, device = work.batch, work.frame_size, scale.device
    inputs = {}
    if "audio" in work.rates:  # log-mel rows of Whisper's whole window: (B, mel bins, 2P)
        inputs["audio"] = torch.randn(b, scale.whisper.num_mel_bins, 2 * work.window_positions, device=device)
    if "video" in work.rates:  # grey mouth crops: (B, 1, T, H, W)
        inputs["video"] = torch.randn(b, 1, work.frames["video"], side, side, device=device)
    return inputs


def encode(
    encoders: Encoders, inputs: Mapping[str, torch.Tensor], work: Workload
) -> list[dict[str, torch.Tensor]]:
    """Per-utterance frames of the frozen encoders, as the LLM receives them."""
    features: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if "audio" in inputs:
            hidden = encoders.whisper(inputs["audio"]).last_hidden_state  # (B, P, D)
            features["audio"] = hidden[:, : work.frames["audio"]]  # the frames that cover the speech
        if "video" in inputs:
            features["video"], _ = encoders.avhubert(video=inputs["video"])  # (B, T, D)
    return [{m: f[b] for m, f in features.items()} for b in range(work.batch)]
