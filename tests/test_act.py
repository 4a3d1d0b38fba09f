"""ACT attention calibration (PAPER.md section 4): the formulas, batching, beam search and cached decoding."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AttentionInterface, GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.masking_utils import create_causal_mask

from avsr_sinks.decoding.act import calibrate, calibrate_rows, candidate_heads, find_sinks, search_heads

BETA, THRESHOLD = 0.4, 0.1
HEADS = {(2, 0), (2, 2)}  # 4 layers: layer 2 is the only one ACT may touch


def tiny_llama(init: float = 0.5) -> LlamaForCausalLM:
    """A random 4-layer Llama; a wide init gives peaked attention, so sink scores sit away from 0.1."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=init,
        bos_token_id=1,
        eos_token_id=None,  # no EOS: every row generates max_new_tokens, batched and single line up
        pad_token_id=0,
    )
    return LlamaForCausalLM._from_config(config, attn_implementation="eager").eval()


def prompts(lengths: list[int], seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[1, *torch.randint(3, 64, (n - 1,), generator=g).tolist()] for n in lengths]


def pad(rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[b, span], mask[b, span] = torch.tensor(row), 1
    return ids, mask


def generation_config(num_beams: int, max_new_tokens: int, use_cache: bool = True) -> GenerationConfig:
    return GenerationConfig(
        num_beams=num_beams,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=None,
        pad_token_id=0,
        bos_token_id=1,
        use_cache=use_cache,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
    )


# ----- the formulas, by hand ----------------------------------------------------------------------------
def softmax_row(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def reference(
    logits: list[list[float]], sinks: set[int] | None = None
) -> tuple[list[list[float]], list[list[float]], set[int]]:
    """PAPER.md section 4 by explicit loops over one sequence of real tokens (row coordinates).

    ``logits[i][j]`` for j <= i. Returns the plain causal attention, the calibrated one and the sinks
    (found from the plain attention unless given).
    """
    n = len(logits)
    a = [softmax_row(logits[i][: i + 1]) + [0.0] * (n - i - 1) for i in range(n)]
    if sinks is None:
        alpha = [sum(a[i][j] for i in range(j, n)) / (n - j) for j in range(n)]
        sinks = {j for j in range(1, n) if alpha[j] > THRESHOLD}
    out = []
    for i in range(n):
        freed = (1 - BETA) * sum(a[i][s] for s in sinks if s <= i)
        rest = sum(a[i][j] for j in range(i + 1) if j not in sinks)
        out.append(
            [
                0.0 if j > i else (BETA * a[i][j] if j in sinks else a[i][j] * (1 + freed / rest))
                for j in range(n)
            ]
        )
    return a, out, sinks


def act_call(module, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Runs the registered "act" function so that its output is the attention itself: keys and values are
    the identity and each query row carries its logits (scaling 1). (B, H, Q, K) logits -> (B, H, Q, K)."""
    k = logits.shape[-1]
    eye = torch.eye(k).expand(logits.shape[0], 1, k, k)
    out, weights = AttentionInterface()["act"](module, logits, eye, eye, mask, scaling=1.0)
    assert torch.allclose(out.transpose(1, 2), weights)
    return weights


def test_calibrated_rows_equal_the_hand_computed_formula_and_stay_causal() -> None:
    model = tiny_llama()
    # Three rows of 7 real tokens: unpadded, left-padded by 3 (generation), right-padded by 3 (training).
    n, width = 7, 10
    starts = [0, 3, 0]
    lengths = [width, n, n]
    two_d = torch.zeros(3, width, dtype=torch.long)
    for b, (s, m) in enumerate(zip(starts, lengths, strict=True)):
        two_d[b, s : s + m] = 1
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 2, width, width, generator=g)
    logits[:, :, :, 0] += 3.0  # a strong first token (never calibrated) ...
    logits[:, 0, :, 3 + 3] += 2.5  # ... and, in head 0, a key that draws attention: sinks to find
    # Head 0 calibrated, head 1 (sharing the key/value head) not.
    module = SimpleNamespace(config=model.config, layer_idx=2, num_key_value_groups=2, training=False)
    with calibrate(model, {(2, 0)}, beta=BETA, threshold=THRESHOLD) as calibration:
        mask = create_causal_mask(model.config, torch.zeros(3, width, 32), two_d, None)
        got = act_call(module, logits, mask)

        # The decoding step after it: one new query over the 10 + 1 keys, reusing the prefill sinks.
        step_mask2d = torch.cat([two_d, torch.ones(3, 1, dtype=torch.long)], dim=1)
        step_mask = torch.where(step_mask2d.bool(), 0.0, torch.finfo(torch.float32).min)[:, None, None, :]
        step_logits = torch.randn(3, 2, 1, width + 1, generator=g)
        step = act_call(module, step_logits, step_mask)
    found = calibration.sink_positions()[(2, 0)]

    for b in range(3):
        real = [p for p in range(width) if two_d[b, p]]
        for h in range(2):
            rows = [[float(logits[b, h, p, q]) for q in real] for p in real]
            plain, calibrated, sinks = reference(rows)
            expected = calibrated if h == 0 else plain
            if h == 0:
                assert sorted(sinks) == found[b] and sinks, "the hand-made rows should have sinks"
                changed = torch.tensor(plain) - torch.tensor(calibrated)
                assert changed.abs().max() > 1e-3, "and calibration should move them"
            for i, p in enumerate(real):
                row = got[b, h, p]
                torch.testing.assert_close(row[real], torch.tensor(expected[i]), atol=1e-6, rtol=1e-5)
                assert float(row.sum()) == pytest.approx(1.0, abs=1e-6)
                assert torch.all(row[p + 1 :] == 0), "causality: no attention to later keys"
                assert torch.all(row[[q for q in range(width) if q not in real]] == 0), "padding keys"

            # Decoding: the new token is real position len(real) of the row, and the sinks stay the same.
            step_real = [*real, width]
            step_rows = [[0.0] * len(step_real) for _ in step_real]
            step_rows[-1] = [float(step_logits[b, h, 0, q]) for q in step_real]
            _, step_calibrated, _ = reference(step_rows, sinks if h == 0 else set())
            torch.testing.assert_close(
                step[b, h, 0, step_real], torch.tensor(step_calibrated[-1]), atol=1e-6, rtol=1e-5
            )
            assert float(step[b, h, 0].sum()) == pytest.approx(1.0, abs=1e-6)


# One head, four tokens: sink scores 0.25 (the first token), 2/3, 0.275 and 0.45.
HAND_ROWS = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.5, 0.5, 0.0],
        [0.0, 0.5, 0.05, 0.45],
    ]
)[None, None]


@pytest.mark.parametrize(
    ("exempt", "threshold", "sinks", "last_row"),
    [
        # The first token is not a sink at 0.3: the paper's text calibrates keys 1 and 3 ...
        ("first_token", 0.3, [1, 3], [0.0, 0.5 * 0.4, 0.05 * (1 + 0.6 * 0.95 / 0.05), 0.45 * 0.4]),
        # ... the released code leaves the first key above the threshold (1) alone.
        ("first_sink", 0.3, [3], [0.0, 0.5 * (1 + 0.6 * 0.45 / 0.55), 0.05 * (1 + 0.6 * 0.45 / 0.55), 0.18]),
        # A score equal to the threshold does not exceed it (key 3 at 0.45).
        ("first_token", 0.45, [1], None),
        # At 0.2 the first token is a sink too, and both rules exempt it alone.
        ("first_token", 0.2, [1, 2, 3], None),
        ("first_sink", 0.2, [1, 2, 3], None),
    ],
)
def test_exempt_key_rules_against_hand_computed_rows(
    exempt: str, threshold: float, sinks: list[int], last_row: list[float] | None
) -> None:
    allowed = torch.ones(4, 4, dtype=torch.bool).tril()[None]
    found, first = find_sinks(HAND_ROWS, allowed, threshold, exempt)
    assert found[0, 0].nonzero()[:, 0].tolist() == sinks and first.tolist() == [0]
    if last_row is not None:
        rows = calibrate_rows(HAND_ROWS, found, torch.ones(1, 4, dtype=torch.bool), beta=0.4)
        torch.testing.assert_close(rows[0, 0, 3], torch.tensor(last_row))
        assert float(rows[0, 0, 3].sum()) == pytest.approx(1.0)


def test_an_unknown_exempt_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="exempt_key"), calibrate(tiny_llama(), set(), exempt="bos"):
        pass


# ----- the model --------------------------------------------------------------------------------------
def test_an_empty_head_set_is_exactly_eager_attention() -> None:
    model = tiny_llama()
    ids, mask = pad(prompts([9, 6, 4]), "right")
    left_ids, left_mask = pad(prompts([9, 6, 4]), "left")
    config = generation_config(num_beams=3, max_new_tokens=5)
    with torch.no_grad():
        eager = model(input_ids=ids, attention_mask=mask).logits
        eager_gen = model.generate(input_ids=left_ids, attention_mask=left_mask, generation_config=config)
        with calibrate(model, []):
            assert model.config._attn_implementation == "act"
            act = model(input_ids=ids, attention_mask=mask).logits
            act_gen = model.generate(input_ids=left_ids, attention_mask=left_mask, generation_config=config)
    assert model.config._attn_implementation == "eager", "the previous implementation is restored"
    assert torch.equal(eager, act)
    assert torch.equal(eager_gen.sequences, act_gen.sequences)
    assert torch.equal(eager_gen.sequences_scores, act_gen.sequences_scores)
    for a, b in zip(eager_gen.logits, act_gen.logits, strict=True):
        assert torch.equal(a, b)


def test_a_right_padded_batch_equals_one_sample_at_a_time() -> None:
    model = tiny_llama()
    rows = prompts([12, 9, 6])
    ids, mask = pad(rows, "right")
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        with calibrate(model, HEADS) as calibration:
            batched = model(input_ids=ids, attention_mask=mask).logits
            batched_sinks = calibration.sink_positions()
            for b, row in enumerate(rows):
                alone = model(input_ids=torch.tensor([row])).logits
                torch.testing.assert_close(batched[b, : len(row)], alone[0], atol=1e-5, rtol=1e-5)
                assert {h: s[b] for h, s in batched_sinks.items()} == {
                    h: s[0] for h, s in calibration.sink_positions().items()
                }
    assert (batched - plain).abs().max() > 1e-2, "calibration should change the logits"


def test_left_padded_beam_search_equals_one_sample_at_a_time() -> None:
    model = tiny_llama()
    rows = prompts([11, 7, 5], seed=2)
    ids, mask = pad(rows, "left")
    beams = 3
    config = generation_config(num_beams=beams, max_new_tokens=6)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        with calibrate(model, HEADS) as calibration:
            batched = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            # Beam search repeated each sample before the prefill; the rows of one sample found the same
            # sinks, so the cache's beam reordering (within a sample) never needs them reordered.
            for sinks in calibration.sinks.values():
                assert sinks.shape[0] == len(rows) * beams
                for b in range(len(rows)):
                    group = sinks[b * beams : (b + 1) * beams]
                    assert all(torch.equal(group[0], other) for other in group[1:])
                    assert group[0].any(), "the test should calibrate something"
            singles = [
                model.generate(input_ids=torch.tensor([row]), generation_config=config) for row in rows
            ]
    width = ids.shape[1]
    for b, (row, single) in enumerate(zip(rows, singles, strict=True)):
        assert torch.equal(batched.sequences[b, width:], single.sequences[0, len(row) :])
        torch.testing.assert_close(batched.sequences_scores[b], single.sequences_scores[0], atol=1e-5, rtol=0)
    assert not torch.allclose(batched.sequences_scores, plain.sequences_scores, atol=1e-3)


def test_cached_decoding_equals_full_recomputation_with_the_prefill_sinks() -> None:
    model = tiny_llama()
    ids, mask = pad(prompts([10, 6], seed=4), "left")
    steps = 6
    config = generation_config(num_beams=1, max_new_tokens=steps, use_cache=True)
    with torch.no_grad(), calibrate(model, HEADS) as calibration:
        cached = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        prefill_sinks = {layer: s.clone() for layer, s in calibration.sinks.items()}
        # Recompute every step without a cache, applying the sinks found on the prompt (as cached
        # decoding must): a decoding step that dropped, misplaced or re-found them would differ.
        calibration.freeze = True
        recomputed = []
        for t in range(steps):
            seq = cached.sequences[:, : ids.shape[1] + t]
            seq_mask = torch.cat([mask, torch.ones(len(seq), t, dtype=torch.long)], dim=1)
            positions = (seq_mask.cumsum(-1) - 1).masked_fill(seq_mask == 0, 0)
            out = model(input_ids=seq, attention_mask=seq_mask, position_ids=positions)
            recomputed.append(out.logits[:, -1])
        assert all(torch.equal(prefill_sinks[k], v) for k, v in calibration.sinks.items())
    for t in range(steps):
        # Float noise between cached and full attention is ~1e-5 on these logits; a corrupted row is >1e-2.
        torch.testing.assert_close(cached.logits[t], recomputed[t], atol=1e-4, rtol=1e-4)
        assert torch.equal(cached.sequences[:, ids.shape[1] + t], recomputed[t].argmax(-1))
    # The decoding steps were calibrated: plain attention on the same tokens gives other logits.
    with torch.no_grad():
        full_mask = torch.cat([mask, torch.ones(len(ids), steps, dtype=torch.long)], dim=1)
        positions = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 0)
        plain = model(input_ids=cached.sequences, attention_mask=full_mask, position_ids=positions).logits
    last = torch.stack([plain[:, ids.shape[1] + t - 1] for t in range(steps)])
    assert (last - torch.stack(list(cached.logits))).abs().max() > 1e-2


# ----- heads ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", [(0, 1), (1, 0), (3, 2)])
def test_layers_0_1_and_the_last_are_refused(head: tuple[int, int]) -> None:
    model = tiny_llama()
    with (
        pytest.raises(ValueError, match=rf"refused heads \[\({head[0]}, {head[1]}\)\]"),
        calibrate(model, {(2, 1), head}),
    ):
        pass
    assert model.config._attn_implementation == "eager"


def test_candidate_heads_skip_layers_0_1_and_the_last() -> None:
    assert candidate_heads(6, 2) == [(2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (4, 1)]
    assert candidate_heads(3, 4) == []


def test_search_heads_keeps_exactly_the_heads_that_improve_alone() -> None:
    effect = {(2, 0): -0.3, (2, 1): 0.2, (3, 0): 0.0, (3, 1): -0.1, (4, 2): -0.05}
    calls: list[frozenset] = []

    def score(heads: frozenset[tuple[int, int]]) -> float:
        calls.append(heads)
        # Heads help alone but interact when combined, so the kept set's score is its own.
        return 2.0 + sum(effect[h] for h in heads) + (0.5 if len(heads) > 1 else 0.0)

    result = search_heads(score, list(effect))
    assert json.loads(json.dumps(result)) == result
    assert result["baseline_score"] == 2.0
    assert result["kept_heads"] == [[2, 0], [3, 1], [4, 2]]
    assert result["kept_score"] == pytest.approx(2.0 - 0.45 + 0.5)
    assert {(c["layer"], c["head"]): c["score"] for c in result["candidates"]} == pytest.approx(
        {h: 2.0 + e for h, e in effect.items()}
    )
    assert [c["improves"] for c in result["candidates"]] == [True, False, False, True, True]
    assert calls[0] == frozenset() and calls[-1] == frozenset({(2, 0), (3, 1), (4, 2)})
    assert len(calls) == 1 + len(effect) + 1
