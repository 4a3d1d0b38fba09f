"""AVSRModel.forward runs the LM head only where a label is predicted; the loss must not change.

Reference: transformers' own causal-LM loss (LlamaForCausalLM with ``labels``: full logits, labels shifted
by one, mean over the label tokens), which AVSRModel.forward called before.
"""

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.llm import load_llm

DIM = 12  # encoder output width


@pytest.fixture
def model(tiny_lm_dir: Path) -> AVSRModel:
    """The AVSR model on a random 2-layer Llama with an untied head, scaled so that its next-token
    distributions are far from uniform (a shifted position then gives a clearly different loss)."""
    _, tokenizer = load_llm(tiny_lm_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    llm = LlamaForCausalLM(config)
    with torch.no_grad():
        llm.lm_head.weight.mul_(50.0)
    cfg = ModelConfig(
        modalities=("audio",),
        rates={"audio": 4},
        input_dims={"audio": DIM},
        compression="avgpool",
        projector_hidden=16,
        projector_layernorm=True,
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.0,
        lora_targets=("q_proj", "v_proj"),
        prompt="transcribe speech to text",
    )
    return AVSRModel(cfg, llm, tokenizer).eval()


# Rows of different lengths, so the label positions differ per row and right padding is exercised.
_GEN = torch.Generator().manual_seed(0)
FEATURES = [{"audio": torch.randn(n, DIM, generator=_GEN)} for n in (9, 3, 17)]
TRANSCRIPTS = ["the cat sat on the mat", "a dog", "we will go home soon"]


def full_logits_loss(model: AVSRModel, shift: int = 1) -> torch.Tensor:
    """Cross-entropy over the whole sequence's logits; ``shift`` 1 is the causal-LM loss."""
    batch = model.assemble(FEATURES, TRANSCRIPTS)
    logits = model.llm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask).logits
    logits, labels = logits[:, : logits.shape[1] - shift], batch.labels[:, shift:]  # (B, L - shift, V)
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100
    )


def test_loss_equals_the_full_logits_cross_entropy(model: AVSRModel) -> None:
    out, batch = model(FEATURES, TRANSCRIPTS)
    reference = model.llm(
        inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, labels=batch.labels
    ).loss
    torch.testing.assert_close(out.loss, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.loss, full_logits_loss(model), rtol=0, atol=1e-5)
    # The check above tells a shifted position apart: one position off moves the loss by far more than
    # the tolerance.
    for wrong in (0, 2):
        assert abs(full_logits_loss(model, shift=wrong).item() - reference.item()) > 1e-2


def test_gradients_and_hidden_states_match_the_full_logits_pass(model: AVSRModel) -> None:
    out, batch = model(FEATURES, TRANSCRIPTS, output_hidden_states=True)
    full = model.llm(
        inputs_embeds=batch.inputs_embeds,
        attention_mask=batch.attention_mask,
        labels=batch.labels,
        output_hidden_states=True,
    )
    assert out.logits is None
    assert len(out.hidden_states) == len(full.hidden_states) == model.llm.config.num_hidden_layers + 1
    for ours, theirs in zip(out.hidden_states, full.hidden_states, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ours = torch.autograd.grad(out.loss, trainable, retain_graph=True)  # the projector's graph is shared
    theirs = torch.autograd.grad(full.loss, trainable)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
