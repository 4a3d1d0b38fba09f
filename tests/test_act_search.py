"""ACT on an AVSR model: the head search on validation data and decoding with the heads it kept."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from avsr_sinks.decoding.act import _ACTIVE, calibrate, calibrate_as_set, candidate_heads
from avsr_sinks.decoding.act_search import SingleHeadScorer, prefix_calibrated_ce, search_act_heads
from avsr_sinks.decoding.decode import teacher_forced_ce
from avsr_sinks.decoding.method import method_context
from avsr_sinks.features.store import FeatureDataset, FeatureStore, collate_features
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.layer_outputs import decoder_layers
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import ActSpec, DecodeSpec, resolve_run
from tests.conftest import REPO, tiny_llm
from tests.train_job import make_features, toy_model_config

ACT = ActSpec(beta=0.4, sink_threshold=0.1, exempt_key="first_token", search_metric="ce", search_utterances=8)
DECODE = DecodeSpec(batch_size=4, beam_size=2, max_new_tokens=6, autocast_bf16_on_cpu=False)


def toy(lm_dir: Path, data: Path) -> tuple[AVSRModel, FeatureDataset]:
    transcripts = make_features(data)
    return AVSRModel(toy_model_config(None), *load_llm(lm_dir)), FeatureDataset(
        {"audio": FeatureStore(data)}, transcripts
    )


def test_search_scores_every_candidate_against_the_uncalibrated_model(
    four_layer_lm: Path, tmp_path: Path
) -> None:
    model, dataset = toy(four_layer_lm, tmp_path / "data")
    result = search_act_heads(model, dataset, ACT, DECODE)
    assert [(c["layer"], c["head"]) for c in result["candidates"]] == candidate_heads(4, 2)
    subset = torch.utils.data.Subset(dataset, range(8))
    assert result["baseline_score"] == pytest.approx(teacher_forced_ce(model, subset, 4), rel=1e-6)
    assert all(c["score"] != result["baseline_score"] for c in result["candidates"]), "calibration acts"
    assert result["kept_heads"] == [[c["layer"], c["head"]] for c in result["candidates"] if c["improves"]]
    assert model.llm.get_base_model().config._attn_implementation == "eager", "restored after the search"


def test_an_unknown_search_metric_is_refused_by_name(four_layer_lm: Path, tmp_path: Path) -> None:
    model, dataset = toy(four_layer_lm, tmp_path / "data")
    with pytest.raises(ValueError, match="act.search_metric must be one of .*, got 'bleu'"):
        search_act_heads(model, dataset, dataclasses.replace(ACT, search_metric="bleu"), DECODE)


def test_act_decodes_with_the_kept_heads_and_refuses_foreign_searches(
    four_layer_lm: Path, tmp_path: Path
) -> None:
    params = load_params([REPO / "params.yaml"])
    model, dataset = toy(four_layer_lm, tmp_path / "data")
    act, baseline = parse_name("asr-a4-act-s0"), parse_name("asr-a4-baseline-s0")
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({**resolve_run(params, act).eval_record(), "kept_heads": [[2, 0], [2, 1]]}))
    config = model.llm.get_base_model().config
    with method_context(model, resolve_run(params, act), heads) as kept:
        assert kept == [[2, 0], [2, 1]] and config._attn_implementation == "act"
        assert _ACTIVE[id(config)].exempt == params["act"]["exempt_key"] == "first_token"
    released = {**params, "act": {**params["act"], "exempt_key": "first_sink"}}
    heads_released = tmp_path / "heads_released.json"
    heads_released.write_text(
        json.dumps({**resolve_run(released, act).eval_record(), "kept_heads": [[2, 0]]})
    )
    with method_context(model, resolve_run(released, act), heads_released):
        assert _ACTIVE[id(config)].exempt == "first_sink"
    with method_context(model, resolve_run(params, baseline), None) as kept:
        assert kept is None and config._attn_implementation == "eager"
    with (
        pytest.raises(ValueError, match="not an ACT experiment"),
        method_context(model, resolve_run(params, baseline), heads),
    ):
        pass
    with (
        pytest.raises(ValueError, match="give the heads.json"),
        method_context(model, resolve_run(params, act), None),
    ):
        pass
    other = {**params, "act": {**params["act"], "beta": 0.5}}
    with (
        pytest.raises(ValueError, match=r"other settings:\n  act.beta"),
        method_context(model, resolve_run(other, act), heads),
    ):
        pass


def test_the_search_calibrates_the_positions_decoding_calibrates(four_layer_lm: Path, tmp_path: Path) -> None:
    """For the same utterances, the head search's scoring pass and a decoding find the same sink sets in
    every calibrated head (the prefix's), not those of a pass that also sees the transcript."""
    model, dataset = toy(four_layer_lm, tmp_path / "data")
    subset = torch.utils.data.Subset(dataset, range(4))
    batch = collate_features([subset[i] for i in range(4)])
    heads = candidate_heads(4, 2)
    with calibrate(model, heads, threshold=0.05) as calibration:
        prefix_calibrated_ce(model, subset, 4, calibration)
        searched = calibration.sink_positions()
    with calibrate(model, heads, threshold=0.05) as calibration:
        model.generate(batch["features"], beam_size=1, max_new_tokens=3)
        decoded = calibration.sink_positions()
    with calibrate(model, heads, threshold=0.05) as calibration:
        model(batch["features"], batch["transcripts"])
        with_transcript = calibration.sink_positions()
    assert searched == decoded
    assert any(rows != [[]] * 4 for rows in searched.values()), "the heads should have sinks to compare"
    assert with_transcript != searched, "a pass over the transcript finds other sinks (the test's premise)"


def test_the_search_score_of_a_padded_batch_equals_one_utterance_at_a_time(
    four_layer_lm: Path, tmp_path: Path
) -> None:
    model, dataset = toy(four_layer_lm, tmp_path / "data")
    subset = torch.utils.data.Subset(dataset, range(4))
    heads = candidate_heads(4, 2)
    with calibrate(model, heads, threshold=0.05) as calibration:
        batched = prefix_calibrated_ce(model, subset, 4, calibration)
        one_by_one = prefix_calibrated_ce(model, subset, 1, calibration)
    assert batched == pytest.approx(one_by_one, rel=1e-5)
    assert batched != pytest.approx(teacher_forced_ce(model, subset, 4), rel=1e-4), "calibration acts"


def test_a_head_scored_alone_from_cached_layer_inputs_equals_the_full_prefix_calibrated_pass(
    tmp_path: Path,
) -> None:
    """The search's fast path for one head (layers from the head's own on, the prefix's sink sets found
    once) scores every candidate as the two whole passes of prefix_calibrated_ce do; six layers, so the
    candidates start at different depths, two batches, the second one short."""
    model, dataset = toy(tiny_llm(tmp_path / "lm6", layers=6), tmp_path / "data")
    subset = torch.utils.data.Subset(dataset, range(7))
    act = dataclasses.replace(ACT, sink_threshold=0.05)
    scorer = SingleHeadScorer(model, subset, 4, act)
    heads = candidate_heads(6, 2)
    assert {layer for layer, _ in heads} == {2, 3, 4}
    full = []
    for head in heads:
        with calibrate_as_set(model, {head}, act) as calibration:
            full.append(prefix_calibrated_ce(model, subset, 4, calibration))
    fast = [scorer(head) for head in heads]
    assert fast == pytest.approx(full, rel=1e-6, abs=0.0)
    assert len(set(full)) == len(full), "each head's calibration changes the score differently"
    assert model.llm.get_base_model().config._attn_implementation == "eager"
    assert len(decoder_layers(model.llm)) == 6, "the decoder gets all its layers back"
