"""Tiny random models of the paper-scale classes, saved as Hugging Face folders like the real ones.

Stand-ins, built offline in seconds, for the models configs/paper.yaml reads from local folders:
Whisper-medium.en (a ``WhisperModel`` plus its feature extractor) and Llama 3.2 (a ``LlamaForCausalLM``
with Llama 3's conventions: grouped-query attention, llama3 rope scaling, tied embeddings, a byte-level
BPE tokenizer with ``<|begin_of_text|>``/``<|end_of_text|>``, no pad token and none of Llama-AVSR's
special tokens, and a generation config that samples), and AV-HuBERT Large (a fairseq-format
checkpoint of a tiny AV-HuBERT with the real key layout, which the pipeline converts like
large_vox_iter5.pt).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

LLAMA3_BOS, LLAMA3_EOS = "<|begin_of_text|>", "<|end_of_text|>"


def save_tiny_whisper(folder: Path, seed: int = 0) -> None:
    """A random Whisper of medium.en's layout (80 mel bins, a 30 s window of 1500 positions), d_model 16."""
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=32,
        # Whisper's default special ids (50256 and up) must fit the tiny vocabulary.
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def save_tiny_llama(folder: Path, sentences: Sequence[str], seed: int = 0) -> None:
    """A random 2-layer Llama 3.2 look-alike (hidden 32) and a byte-level BPE tokenizer trained on
    ``sentences``."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[LLAMA3_BOS, LLAMA3_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(sentences, trainer=trainer)
    bos, eos = bpe.token_to_id(LLAMA3_BOS), bpe.token_to_id(LLAMA3_EOS)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{LLAMA3_BOS} $A", pair=f"{LLAMA3_BOS} $A {LLAMA3_BOS} $B", special_tokens=[(LLAMA3_BOS, bos)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=LLAMA3_BOS, eos_token=LLAMA3_EOS)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=131_072,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rope_theta=500_000.0,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    # Llama 3.2 ships a sampling generation config; decoding must stay deterministic regardless.
    model.generation_config = GenerationConfig(
        bos_token_id=bos, eos_token_id=eos, do_sample=True, temperature=0.6, top_p=0.9
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def save_tiny_avhubert_checkpoint(path: Path) -> Path:
    """A tiny AV-HuBERT saved as a fairseq pretraining checkpoint (omegaconf-like cfg, fp16 weights)."""
    from tests.encoders.test_avhubert import (
        TINY,
        _checkpoint_state,
        _fairseq_cfg,
        _random_model,
        _write_checkpoint,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_checkpoint(path, _checkpoint_state(_random_model(TINY, seed=3)), _fairseq_cfg(TINY))
