"""AVSRModel: compression, input layout, labels, LoRA placement, decoding, parameter count."""

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.layers import Compressor
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.modeling.segments import Segment


def config(
    rate: int = 4,
    compression: str = "avgpool",
    dim: int = 12,
    hidden: int = 16,
    rank: int = 4,
    layernorm: bool = True,
) -> ModelConfig:
    return ModelConfig(
        modalities=("audio",),
        rates={"audio": rate},
        input_dims={"audio": dim},
        compression=compression,
        projector_hidden=hidden,
        projector_layernorm=layernorm,
        lora_rank=rank,
        lora_alpha=2,
        lora_dropout=0.0,
        lora_targets=("q_proj", "v_proj"),
        prompt="transcribe speech to text",
    )


def test_matched_tokens_take_the_embedding_rms_norm(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    target = llm.get_input_embeddings().weight.detach().norm(dim=1).pow(2).mean().sqrt()
    matched = AVSRModel(ModelConfig(**{**config().__dict__, "match_embedding_norm": True}), llm, tok)
    tokens = matched._modality_tokens("audio", 50 * torch.randn(9, 12))
    torch.testing.assert_close(tokens.norm(dim=1), target.expand(3))
    as_is = AVSRModel(config(), *load_llm(tiny_lm_dir))
    as_is.load_trainable_state_dict(matched.trainable_state_dict())
    frames = torch.randn(9, 12)
    torch.testing.assert_close(
        matched._modality_tokens("audio", frames),
        torch.nn.functional.normalize(as_is._modality_tokens("audio", frames), dim=-1) * target,
    )


def test_avgpool_keeps_partial_window() -> None:
    frames = torch.arange(10, dtype=torch.float32).unsqueeze(1)  # (10, 1)
    pooled = Compressor("avgpool", 4)(frames)
    torch.testing.assert_close(pooled.squeeze(1), torch.tensor([1.5, 5.5, 8.5]))


def test_stack_concatenates_frames() -> None:
    frames = torch.arange(10, dtype=torch.float32).reshape(5, 2)  # (5, 2)
    stacked = Compressor("stack", 2)(frames)
    assert stacked.shape == (3, 4)
    torch.testing.assert_close(stacked[0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    torch.testing.assert_close(stacked[2], torch.tensor([8.0, 9.0, 0.0, 0.0]))


def test_layout_segments_and_labels(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(config(), llm, tok)
    feats = [{"audio": torch.randn(9, 12)}, {"audio": torch.randn(3, 12)}]
    batch = model.assemble(feats, ["the cat", "a dog runs"])
    prompt_len = len(tok("transcribe speech to text", add_special_tokens=False)["input_ids"])
    seg0 = batch.segments[0].tolist()
    assert seg0[0] == Segment.BOS and seg0[1] == Segment.DELIMITER
    assert seg0[2:5] == [Segment.AUDIO] * 3 and seg0[5] == Segment.DELIMITER  # ceil(9 / 4) = 3 tokens
    assert seg0[6 : 6 + prompt_len] == [Segment.PROMPT] * prompt_len
    target = tok("the cat", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    labels0 = batch.labels[0][batch.labels[0] != -100].tolist()
    assert labels0 == target
    assert (batch.labels[batch.segments != Segment.RESPONSE] == -100).all()
    assert (batch.attention_mask == (batch.segments != Segment.PAD).long()).all()


def test_only_projector_and_lora_train(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(config(), llm, tok)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("projectors.") or "lora_" in n for n in names)
    assert any("q_proj.lora_A" in n for n in names) and any("v_proj.lora_B" in n for n in names)
    assert not any("k_proj" in n or "o_proj" in n for n in names)
    out, _ = model([{"audio": torch.randn(8, 12)}], ["the cat"])
    out.loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_batched_generation_equals_one_at_a_time(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(config(), llm, tok).eval()
    feats = [{"audio": torch.randn(n, 12)} for n in (13, 4, 8)]
    batched = model.generate(feats, beam_size=2, max_new_tokens=6)
    single = [model.generate([f], beam_size=2, max_new_tokens=6)[0] for f in feats]
    assert batched == single
    assert model.generate(feats, beam_size=2, max_new_tokens=6) == batched


def test_text_only_prefix_drops_the_modality_block(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(config(), llm, tok).eval()
    batch = model.assemble([{}, {"audio": torch.randn(8, 12)}], padding_side="left")
    assert (batch.segments[0] == Segment.AUDIO).sum() == 0 and (batch.segments[1] == Segment.AUDIO).sum() == 2
    assert (batch.segments[0] == Segment.DELIMITER).sum() == 0
    floor = model.generate([{}, {}], beam_size=2, max_new_tokens=6)
    assert floor[0] == floor[1]  # nothing but the prompt: one hypothesis for every utterance


def test_checkpoint_round_trip_and_refusal(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(config(), llm, tok)
    state = model.trainable_state_dict()
    llm2, tok2 = load_llm(tiny_lm_dir)
    other = AVSRModel(config(), llm2, tok2)
    other.load_trainable_state_dict(state)
    for name, tensor in other.trainable_state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    llm3, tok3 = load_llm(tiny_lm_dir)
    with pytest.raises(ValueError, match="shape"):
        AVSRModel(config(hidden=20), llm3, tok3).load_trainable_state_dict(state)


def test_missing_llm_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Llama-3.2"):
        load_llm(tmp_path / "absent")


def test_trainable_count_matches_llama_3b_by_hand(tiny_lm_dir: Path) -> None:
    """Llama-3.2-3B shape (hidden 3072, 28 layers, 24 heads, 8 KV heads), Whisper-medium width 1024,
    projector hidden 2048 with LayerNorm, LoRA rank 96 on q and v: counted by hand below."""
    _, tok = load_llm(tiny_lm_dir)
    shape = LlamaConfig(
        vocab_size=128256,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
    )
    with torch.device("meta"):
        llm = LlamaForCausalLM(shape)
        model = AVSRModel(config(rate=4, dim=1024, hidden=2048, rank=96), llm, tok)
    lora_q = 96 * (3072 + 3072)  # A: 3072 -> 96, B: 96 -> 3072
    lora_v = 96 * (3072 + 8 * 128)  # A: 3072 -> 96, B: 96 -> 1024 (8 KV heads of 128)
    projector = (1024 * 2048 + 2048) + (2048 * 3072 + 3072) + 2 * 3072
    assert model.count_trainable() == 28 * (lora_q + lora_v) + projector == 35_924_992


@pytest.mark.parametrize("head", ["linear", "tied_embeddings"])
def test_ctc_head_trains_projector_and_head_only_when_on(tiny_lm_dir: Path, head: str) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    plain = AVSRModel(config(), llm, tok)
    llm2, tok2 = load_llm(tiny_lm_dir)
    with_ctc = AVSRModel(ModelConfig(**{**config().__dict__, "ctc_head": head}), llm2, tok2)
    hidden = llm2.config.hidden_size
    # linear: a weight and bias per vocabulary entry; tied: one temperature and the blank's scorer.
    extra = hidden * len(tok) + len(tok) if head == "linear" else 1 + hidden + 1
    assert with_ctc.count_trainable() - plain.count_trainable() == extra
    out, _ = with_ctc(
        [{"audio": torch.randn(40, 12)}, {"audio": torch.randn(2, 12)}], ["the cat", "a dog runs"]
    )
    # The second sample has 1 audio token for 3+ targets: infeasible, so it contributes zero, not inf.
    assert torch.isfinite(out["ctc_loss"]) and out["ctc_loss"] > 0
    out["ctc_loss"].backward()
    assert all(p.grad is not None for p in with_ctc.ctc_head.parameters())
    assert with_ctc.projectors["audio"][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in with_ctc.named_parameters() if "lora_" in n)
    plain_out, _ = plain([{"audio": torch.randn(8, 12)}], ["the cat"])
    assert "ctc_loss" not in plain_out


def test_ctc_warmup_pass_skips_the_llm_and_matches_the_full_pass(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(ModelConfig(**{**config().__dict__, "ctc_head": "tied_embeddings"}), llm, tok)
    features = [{"audio": torch.randn(40, 12)}, {"audio": torch.randn(24, 12)}]
    full, _ = model(features, ["the cat", "a dog runs"])
    warmup, batch = model(features, ["the cat", "a dog runs"], run_llm=False)
    assert batch is None and set(warmup) == {"ctc_loss"}
    torch.testing.assert_close(warmup["ctc_loss"], full["ctc_loss"])
    with pytest.raises(ValueError, match="no CTC head"):
        AVSRModel(config(), *load_llm(tiny_lm_dir))(features, ["a", "b"], run_llm=False)


def test_ctc_reads_only_the_named_modalities(tiny_lm_dir: Path) -> None:
    two = {
        **config().__dict__,
        "modalities": ("audio", "video"),
        "rates": {"audio": 4, "video": 2},
        "input_dims": {"audio": 12, "video": 6},
        "ctc_head": "tied_embeddings",
    }
    features = [{"audio": torch.randn(40, 12), "video": torch.randn(20, 6)}]
    audio_only = AVSRModel(ModelConfig(**{**two, "ctc_modalities": ("audio",)}), *load_llm(tiny_lm_dir))
    for run_llm in (True, False):
        out, _ = audio_only(features, ["the cat"], run_llm=run_llm)
        out["ctc_loss"].backward()
        assert audio_only.projectors["audio"][0].weight.grad.abs().sum() > 0
        video_grad = audio_only.projectors["video"][0].weight.grad
        assert video_grad is None or not video_grad.any()
        audio_only.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match=r"CTC modalities \['video'\] must be some of .*\['audio'\]"):
        ModelConfig(**{**config().__dict__, "ctc_modalities": ("video",)})


def test_ctc_over_the_batch_classes_ignores_every_other_word_piece(tiny_lm_dir: Path) -> None:
    features = [{"audio": torch.randn(40, 12)}, {"audio": torch.randn(24, 12)}]
    transcripts = ["the cat", "a dog runs"]

    def ctc_loss(head: str, classes: str, bias_outside: float | None = None) -> torch.Tensor:
        torch.manual_seed(0)
        llm, tok = load_llm(tiny_lm_dir)
        cfg = ModelConfig(**{**config().__dict__, "ctc_head": head, "ctc_classes": classes})
        model = AVSRModel(cfg, llm, tok)
        if bias_outside is not None:  # the word pieces outside the batch (and the blank) scored out of reach
            inside = set(tok(transcripts, add_special_tokens=False)["input_ids"][0])
            inside |= set(tok(transcripts, add_special_tokens=False)["input_ids"][1]) | {tok.pad_token_id}
            with torch.no_grad():
                model.ctc_head.bias[[i for i in range(len(tok)) if i not in inside]] = bias_outside
        return model(features, transcripts, run_llm=False)[0]["ctc_loss"]

    # Over the batch's word pieces and the blank, the loss is the whole vocabulary's loss once the other
    # word pieces score too low to matter: the targets and the blank are renumbered right.
    torch.testing.assert_close(ctc_loss("linear", "batch"), ctc_loss("linear", "vocabulary", -1e4))
    # Fewer classes to tell apart: a lower loss from the same weights.
    assert ctc_loss("tied_embeddings", "batch") < ctc_loss("tied_embeddings", "vocabulary")
    with pytest.raises(ValueError, match="ctc classes must be one of"):
        ModelConfig(**{**config().__dict__, "ctc_classes": "sampled"})


def test_tied_ctc_head_scores_against_the_embedding_table() -> None:
    from avsr_sinks.modeling.layers import TiedCTCHead

    head = TiedCTCHead(hidden=3)
    table = torch.eye(3)
    tokens = torch.tensor([[0.0, 0.0, 2.0]])
    logits = head(tokens, table, 0)
    torch.testing.assert_close(logits[0, 1:], torch.tensor([0.0, 8.0]))  # scale 4 x dot product
    torch.testing.assert_close(logits[0, 0], head.blank(tokens)[0, 0])


def test_ctc_greedy_merges_repeats_and_drops_blanks(tiny_lm_dir: Path) -> None:
    llm, tok = load_llm(tiny_lm_dir)
    model = AVSRModel(ModelConfig(**{**config().__dict__, "ctc_head": "linear"}), llm, tok)
    the, cat = tok("the cat", add_special_tokens=False)["input_ids"][:2]
    path = [the, the, tok.pad_token_id, cat, tok.pad_token_id, cat]

    class FixedPath(torch.nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.tensor(path), len(tok)).float()

    model.ctc_head = FixedPath()
    assert model.ctc_greedy([{"audio": torch.randn(24, 12)}], "audio") == [tok.decode([the, cat, cat])]
