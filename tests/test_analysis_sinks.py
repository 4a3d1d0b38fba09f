"""The AVSR sink analysis: sinks, massive activations and BOS cosine found exactly where they were put."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr_sinks.analysis.capture import collect, write_analysis
from avsr_sinks.analysis.metrics import analyze_batch
from avsr_sinks.analysis.thresholds import AnalysisThresholds
from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.modeling.segments import Segment

S, L, HEADS, H = 10, 3, 4, 16
# BOS <audio> A A </audio> INST INST resp resp resp
SEGMENTS = [Segment.BOS, Segment.DELIMITER, Segment.AUDIO, Segment.AUDIO, Segment.DELIMITER]
SEGMENTS += [Segment.PROMPT] * 2 + [Segment.RESPONSE] * 3
LABELS = ["<s>", "<audio>", "", "", "</audio>", "trans", "cribe", "the", "cat", "</s>"]
CLOSE_AUDIO = 4


def background(n: int) -> torch.Tensor:
    """(n, n) causal attention, all sink scores <= 0.26 for n = 10: every visible key weighs 1, BOS 0.5."""
    weights = torch.ones(n, n).tril()
    weights[:, 0] = 0.5
    return weights / weights.sum(1, keepdim=True)


def with_sink(n: int, key: int, share: float) -> torch.Tensor:
    """Background attention, except that every query that sees ``key`` gives it ``share`` (all of it when
    ``key`` is the only key the query sees)."""
    a = background(n)
    for i in range(key, n):
        rest = a[i].clone()
        rest[key] = 0
        a[i] = rest * (1 - share) / rest.sum() if rest.sum() > 0 else rest
        a[i, key] = share if rest.sum() > 0 else 1.0
    return a


def utterance(massive: bool = True) -> dict:
    """One row with BOS a sink in heads 0-2 of layers 1-2, an intermediate sink at </audio> in layer 2 head
    3, massive entries at (BOS, feature 7) in layers 1-2 and at (</audio>, feature 7) in layer 2, and the
    MLPs of layers 1 and 2 writing feature 7 (plus a decoy at feature 5 in layer 0 that no hidden state
    carries)."""
    attentions = []
    for layer in range(L):
        heads = [background(S) for _ in range(HEADS)]
        if layer >= 1:
            heads[:3] = [with_sink(S, 0, 0.8) for _ in range(3)]
        if layer == 2:
            heads[3] = with_sink(S, CLOSE_AUDIO, 0.6)
        attentions.append(torch.stack(heads))  # (heads, S, S)
    hidden = [torch.randn(S, H) for _ in range(L + 1)]
    mlp = [torch.randn(S, H) for _ in range(L)]
    if massive:
        hidden[2][0, 7] = hidden[3][0, 7] = 5000.0
        hidden[3][CLOSE_AUDIO, 7] = 3000.0
        mlp[1][0, 7] = 5000.0
        mlp[2][CLOSE_AUDIO, 7] = 5000.0
        mlp[0][3, 5] = 5000.0
    return {"attentions": attentions, "hidden": hidden, "mlp": mlp}


def batch(rows: list[dict], pad: int = 0, left: bool = False) -> dict:
    """Stack single rows into the batch tensors, with ``pad`` garbage positions on the right (or left)."""
    width = S + pad
    real = slice(pad, width) if left else slice(0, S)
    B = len(rows)
    attentions = [torch.rand(B, HEADS, width, width) for _ in range(L)]
    hidden = [1e6 * torch.rand(B, width, H) for _ in range(L + 1)]  # padding would dominate any statistic
    mlp = [1e6 * torch.rand(B, width, H) for _ in range(L)]
    segments = torch.full((B, width), Segment.PAD, dtype=torch.long)
    mask = torch.zeros(B, width, dtype=torch.long)
    labels = [["junk"] * width for _ in rows]
    for b, row in enumerate(rows):
        for layer in range(L):
            attentions[layer][b][:, real, real] = row["attentions"][layer]
            mlp[layer][b, real] = row["mlp"][layer]
        for layer in range(L + 1):
            hidden[layer][b, real] = row["hidden"][layer]
        segments[b, real] = torch.tensor(SEGMENTS)
        mask[b, real] = 1
        labels[b][real] = LABELS
    return {
        "attentions": attentions,
        "hidden_states": hidden,
        "mlp_outputs": mlp,
        "segments": segments,
        "attention_mask": mask,
        "token_labels": labels,
    }


@pytest.fixture
def one() -> dict:
    return utterance()


def test_finds_exactly_the_planted_sinks_and_massive_activations(one: dict) -> None:
    metrics, arrays = analyze_batch(**batch([one]), thresholds=AnalysisThresholds())
    layers = metrics["layers"]
    assert [x["bos_sink_share"] for x in layers] == [0.0, 0.75, 0.75]
    assert [x["intermediate_sink_count"] for x in layers] == [0, 0, 1]
    (sink,) = layers[2]["intermediate_sinks"]
    assert sink["position"] == CLOSE_AUDIO and sink["heads"] == [3] and sink["utterance"] == 0
    assert sink["segment"] == "delimiter" and sink["token"] == "</audio>"
    assert sink["score"] == pytest.approx(0.6, abs=1e-6)
    assert layers[2]["intermediate_sinks_by_segment"] == {"delimiter": 1}
    assert layers[2]["intermediate_sinks_by_token"] == {"</audio>": 1}
    groups = layers[2]["by_group"]
    assert {g: x["sinks_per_utterance"] for g, x in groups.items()} == {
        "modality": 1.0,
        "prompt": 0.0,
        "response": 0.0,
    }
    assert (
        groups["modality"]["cosine_bos_sink"] > 0.99 and abs(groups["modality"]["cosine_bos_nonsink"]) < 0.5
    )
    assert groups["prompt"]["cosine_bos_sink"] is None

    assert metrics["massive_features"] == [7]
    assert [x["massive"]["count"] for x in layers] == [0, 1, 2]
    assert [x["massive"]["count_non_bos"] for x in layers] == [0, 0, 1]  # </audio> in layer 2
    assert [(t["position"], t["segment"], t["features"]) for t in layers[2]["massive"]["tokens"]] == [
        (0, "bos", [7]),
        (CLOSE_AUDIO, "delimiter", [7]),
    ]
    assert layers[2]["massive"]["top"][:2] == [5000.0, 3000.0]
    assert 0.3 < layers[2]["massive"]["median"] < 1.5  # |N(0, 1)| has median 0.67
    assert layers[1]["massive"]["top1_over_median"] > 1000
    # The decoy at feature 5 in layer 0's MLP is not a massive feature of any hidden state.
    assert [x["mlp_massive_features"] for x in layers] == [[], [7], [7]]
    assert metrics["first_mlp_layer"] == 1

    # </audio> shares BOS's huge feature 7 in layer 2's output, so their cosine is ~1.
    assert layers[2]["cosine_bos_sink"] > 0.99 and layers[2]["sink_tokens"] == 1
    assert abs(layers[2]["cosine_bos_nonsink"]) < 0.5 and layers[2]["nonsink_tokens"] == S - 2
    assert layers[0]["cosine_bos_sink"] is None and layers[0]["nonsink_tokens"] == S - 1

    fig = metrics["figure"]
    assert fig["attention_layer"] == 2 and fig["hidden_layer"] in (1, 2)
    assert fig["sink_token"] == CLOSE_AUDIO and fig["nonsink_token"] == 2  # the first audio token
    shapes = {k: v.shape for k, v in arrays.items()}
    assert shapes["attention"] == (S, S) and shapes["hidden_abs"] == (S, H)
    assert (
        shapes["cosine_bos"] == (L, S) and shapes["topk"] == (L, 3) and shapes["sink_scores"] == (L, HEADS, S)
    )
    assert shapes["bos_sink_share"] == shapes["intermediate_sink_count"] == (L,)
    assert arrays["token_labels"].tolist() == LABELS and arrays["segments"].tolist() == SEGMENTS
    np.testing.assert_allclose(arrays["attention"], one["attentions"][2].mean(0).numpy(), rtol=1e-6)
    assert all(v.dtype == np.float32 for k, v in arrays.items() if v.dtype.kind == "f")


def test_padding_is_ignored(one: dict) -> None:
    reference, ref_arrays = analyze_batch(**batch([one]))
    for left in (False, True):
        metrics, arrays = analyze_batch(**batch([one], pad=3, left=left))
        assert metrics == reference
        for key, value in ref_arrays.items():
            np.testing.assert_array_equal(arrays[key], value, err_msg=key)


def test_batch_aggregation(one: dict) -> None:
    quiet = utterance(massive=False)
    quiet["attentions"] = [torch.stack([background(S)] * HEADS) for _ in range(L)]
    metrics, arrays = analyze_batch(**batch([quiet, one]), utterance=1)
    layers = metrics["layers"]
    assert [x["bos_sink_share"] for x in layers] == [0.0, 0.375, 0.375]  # mean over the two utterances
    assert [x["intermediate_sink_count"] for x in layers] == [0, 0, 0.5]
    assert layers[2]["by_group"]["modality"]["sinks_per_utterance"] == 0.5
    assert layers[2]["intermediate_sinks"][0]["utterance"] == 1
    assert layers[2]["massive"]["utterance"] == 1 and layers[2]["massive"]["utterances_with"] == 1
    assert metrics["figure"]["utterance"] == 1 and int(arrays["sink_token"]) == CLOSE_AUDIO
    np.testing.assert_allclose(arrays["bos_sink_share"], [0.0, 0.375, 0.375])


def split_sink_batch(carriers_massive: bool) -> dict:
    """One 40-token row whose every query from the fourth on gives 0.2 to each of BOS, <audio> and the first
    audio token (each alone a sink score near 0.2, together 0.65), in every head of both layers; BOS carries
    a massive entry, and so do the other two when ``carriers_massive``."""
    n, layers, heads = 40, 2, 3
    rows = torch.zeros(n, n)
    for i in range(n):
        if i < 3:
            rows[i, : i + 1] = 1 / (i + 1)
        else:
            rows[i, :3] = 0.2
            rows[i, 3 : i + 1] = 0.4 / (i - 2)
    hidden = [torch.randn(1, n, H) for _ in range(layers + 1)]
    for h in hidden[1:]:
        h[0, 0, 7] = 5000.0
        if carriers_massive:
            h[0, 1:3, 7] = 5000.0
    return {
        "attentions": [rows.expand(1, heads, n, n).clone() for _ in range(layers)],
        "hidden_states": hidden,
        "mlp_outputs": [torch.randn(1, n, H) for _ in range(layers)],
        "segments": torch.tensor([[Segment.BOS, Segment.DELIMITER] + [Segment.AUDIO] * (n - 2)]),
        "attention_mask": torch.ones(1, n, dtype=torch.long),
    }


@pytest.mark.parametrize(("carriers_massive", "share"), [(True, 1.0), (False, 0.0)])
def test_a_sink_spread_over_the_massive_tokens_counts_together(carriers_massive: bool, share: float) -> None:
    metrics, _ = analyze_batch(**split_sink_batch(carriers_massive))
    assert [x["bos_sink_share"] for x in metrics["layers"]] == [0.0, 0.0]
    assert [x["intermediate_sink_count"] for x in metrics["layers"]] == [0, 0]
    assert [x["massive_token_sink_share"] for x in metrics["layers"]] == [share, share]


@pytest.mark.parametrize(("min_queries", "counted"), [(1, 1), (2, 0)])
def test_a_position_seen_by_too_few_queries_is_not_a_sink(min_queries: int, counted: int) -> None:
    row = utterance(massive=False)
    row["attentions"] = [torch.stack([background(S)] * HEADS) for _ in range(L)]
    row["attentions"][1][2] = with_sink(S, S - 1, 0.6)  # the last position: one query sees it
    thresholds = AnalysisThresholds(min_queries=min_queries)
    metrics, _ = analyze_batch(**batch([row]), thresholds=thresholds)
    assert [x["intermediate_sink_count"] for x in metrics["layers"]] == [0, counted, 0]
    assert metrics["layers"][1]["by_group"]["response"]["sinks_per_utterance"] == counted
    assert metrics["thresholds"]["min_queries"] == min_queries


def test_sinks_are_counted_in_the_segment_group_of_their_position() -> None:
    row = utterance(massive=False)
    row["attentions"] = [torch.stack([background(S)] * HEADS) for _ in range(L)]
    first_prompt = SEGMENTS.index(Segment.PROMPT)  # right after </audio>
    row["attentions"][1][0] = with_sink(S, first_prompt, 0.6)
    row["attentions"][2][1] = with_sink(S, CLOSE_AUDIO - 1, 0.6)  # the last audio token
    metrics, _ = analyze_batch(**batch([row]))
    counts = [
        {g: x["sinks_per_utterance"] for g, x in layer["by_group"].items()} for layer in metrics["layers"]
    ]
    assert counts[1] == {"modality": 0.0, "prompt": 1.0, "response": 0.0}
    assert counts[2] == {"modality": 1.0, "prompt": 0.0, "response": 0.0}


def test_the_figure_shows_a_layer_where_bos_and_an_intermediate_token_both_sink(one: dict) -> None:
    """Layer 0 has more intermediate sinks but no BOS sink; layer 2 has both, as the paper's map does."""
    one["attentions"][0][0] = with_sink(S, 2, 0.6)
    one["attentions"][0][1] = with_sink(S, 3, 0.6)
    metrics, _ = analyze_batch(**batch([one]))
    assert [x["intermediate_sink_count"] for x in metrics["layers"]] == [2, 0, 1]
    assert metrics["figure"]["attention_layer"] == 2


def test_thresholds_are_parameters(one: dict) -> None:
    metrics, arrays = analyze_batch(**batch([one]), thresholds=AnalysisThresholds(sink=0.9, massive_abs=1e4))
    assert all(x["bos_sink_share"] == 0 and x["intermediate_sink_count"] == 0 for x in metrics["layers"])
    assert metrics["massive_features"] == [] and metrics["first_mlp_layer"] is None
    assert metrics["layers"][2]["massive"]["top"][0] == 5000.0  # reported even when nothing passes
    assert int(arrays["sink_token"]) == -1
    with pytest.raises(ValueError, match="sink threshold"):
        AnalysisThresholds(sink=1.5)


def test_rejects_inconsistent_inputs(one: dict) -> None:
    inputs = batch([one])
    with pytest.raises(ValueError, match="L \\+ 1 hidden states"):
        analyze_batch(**{**inputs, "hidden_states": inputs["hidden_states"][:-1]})
    segments = inputs["segments"].clone()
    segments[0, 0] = Segment.PROMPT
    with pytest.raises(ValueError, match="BOS"):
        analyze_batch(**{**inputs, "segments": segments})


def test_write_analysis_round_trips(one: dict, tmp_path: Path) -> None:
    metrics, arrays = analyze_batch(**batch([one]))
    json_path, npz_path = write_analysis(tmp_path / "exp", metrics, arrays)

    def no_nan(value: str) -> None:
        raise AssertionError(f"metrics.json holds {value}")

    saved = json.loads(json_path.read_text(), parse_constant=no_nan)
    assert saved["layers"] == metrics["layers"] and "git_commit" in saved
    with np.load(npz_path, allow_pickle=False) as loaded:
        assert set(loaded.files) == set(arrays)
        np.testing.assert_array_equal(loaded["attention"], arrays["attention"])
        assert math.isnan(loaded["cosine_bos_sink"][0])
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["arrays.npz", "metrics.json"]
    with pytest.raises(ValueError, match="NaN|nan"):
        write_analysis(tmp_path / "bad", {"x": math.nan}, arrays)


def tiny_model(lm_dir: Path) -> AVSRModel:
    llm, tok = load_llm(lm_dir)
    cfg = ModelConfig(
        modalities=("audio", "video"),
        rates={"audio": 4, "video": 2},
        input_dims={"audio": 12, "video": 8},
        compression="avgpool",
        projector_hidden=16,
        projector_layernorm=True,
        lora_rank=4,
        lora_alpha=2,
        lora_dropout=0.1,
        lora_targets=("q_proj", "v_proj"),
        prompt="transcribe speech to text",
    )
    return AVSRModel(cfg, llm, tok)


def test_collect_runs_a_tiny_model(tiny_lm_dir: Path) -> None:
    model = tiny_model(tiny_lm_dir).train()
    features = [
        {"audio": torch.randn(30, 12), "video": torch.randn(5, 8)},
        {"audio": torch.randn(3, 12), "video": torch.randn(2, 8)},  # the shorter row, right padded
    ]
    layers = model.llm.get_base_model().get_decoder().layers
    collect(model, features, ["the cat", "a dog runs in the park"])
    # transformers registers hooks of its own on a first forward; the capture's must not stay behind.
    own_hooks = [len(layer._forward_hooks) for layer in layers]
    captured = collect(model, features, ["the cat", "a dog runs in the park"])
    cfg = model.llm.get_base_model().config
    B, width = captured.segments.shape
    assert B == 2 and len(captured.attentions) == len(captured.mlp_outputs) == cfg.num_hidden_layers
    assert len(captured.hidden_states) == cfg.num_hidden_layers + 1
    assert captured.attentions[0].shape == (B, cfg.num_attention_heads, width, width)
    assert captured.mlp_outputs[0].shape == captured.hidden_states[0].shape == (B, width, cfg.hidden_size)
    assert model.training and all(not layer.mlp._forward_hooks for layer in layers)
    assert [len(layer._forward_hooks) for layer in layers] == own_hooks
    # Llama: out = mid + mlp(norm(mid)); the captured tensors must be the layer's raw output and that mlp
    # term, in the last layer too (before the model's final norm).
    with torch.no_grad():
        for index in (0, len(layers) - 1):
            mid = captured.hidden_states[index + 1] - captured.mlp_outputs[index]
            again = layers[index].mlp(layers[index].post_attention_layernorm(mid))
            torch.testing.assert_close(again, captured.mlp_outputs[index], rtol=1e-4, atol=1e-5)
    row = captured.token_labels[0]
    delimiters = [row[i] for i in (captured.segments[0] == Segment.DELIMITER).nonzero()[:, 0].tolist()]
    assert delimiters == ["<audio>", "</audio>", "<video>", "</video>"]
    assert row[0] == model.tokenizer.bos_token
    short = int(captured.attention_mask.sum(1).argmin())
    assert captured.attention_mask[short, -1] == 0 and captured.token_labels[short][-1] == ""  # right padding
    last = int(captured.attention_mask[short].sum()) - 1
    assert captured.token_labels[short][last] == model.tokenizer.eos_token

    metrics, arrays = captured.analyze()
    n = int(captured.attention_mask[0].sum())
    assert metrics["num_layers"] == cfg.num_hidden_layers and metrics["utterances"] == 2
    assert arrays["attention"].shape == (n, n) and arrays["hidden_abs"].shape == (n, cfg.hidden_size)
    assert arrays["cosine_bos"].shape == (cfg.num_hidden_layers, n)


def test_collect_refuses_attention_without_weights_and_cleans_up_on_error(tiny_lm_dir: Path) -> None:
    model = tiny_model(tiny_lm_dir)
    features = [{"audio": torch.randn(9, 12), "video": torch.randn(5, 8)}]
    base = model.llm.get_base_model()
    base.config._attn_implementation = "sdpa"
    with pytest.raises(ValueError, match="eager"):
        collect(model, features, ["the cat"])
    base.config._attn_implementation = "eager"

    def fail(module: torch.nn.Module, args: object) -> None:
        raise RuntimeError("boom")

    layers = base.get_decoder().layers
    handle = layers[-1].register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        collect(model, features, ["the cat"])
    handle.remove()
    assert all(not layer.mlp._forward_hooks for layer in layers)


def test_a_massive_value_in_the_last_layer_is_seen_before_the_final_norm(tiny_lm_dir: Path) -> None:
    """The model's final RMSNorm would scale a planted 5e4 down to about sqrt(hidden); the analysis must
    read the last decoder layer's own output, as every other layer's."""
    model = tiny_model(tiny_lm_dir)
    layers = model.llm.get_base_model().get_decoder().layers

    def plant(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, 0, 3] = 5e4  # BOS, feature 3
        return output

    handle = layers[-1].register_forward_hook(plant)
    try:
        captured = collect(model, [{"audio": torch.randn(12, 12), "video": torch.randn(4, 8)}], ["the cat"])
    finally:
        handle.remove()
    metrics, arrays = captured.analyze()
    last = metrics["layers"][-1]["massive"]
    assert last["top"][0] == pytest.approx(5e4)
    assert last["count"] == 1 and last["tokens"][0]["position"] == 0 and last["tokens"][0]["features"] == [3]
    assert arrays["topk"][-1, 0] == pytest.approx(5e4)
