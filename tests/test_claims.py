"""The claims table reads each of the paper's claims off the sink and WER tables by its stated criterion:
tables built so that every claim's outcome is known in advance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from avsr_sinks.report.claims import claims_table, write_claims_tables
from avsr_sinks.report.tables import SINK_COLUMNS, WER_COLUMNS


def sink_row(task: str, rates: str, method: str, seed: int = 0, **figures: float | None) -> dict:
    row = {
        "experiment": f"{task.lower()}-{rates}-{method}-s{seed}",
        "task": task,
        "rates": rates,
        "method": method,
        "seed": seed,
        "bos_sink_share_percent": 80.0,
        "intermediate_sinks": 5.0,
        "sinks_modality": 3.0,
        "sinks_prompt": 2.0,
        "sinks_response": 0.0,
        "massive_activations": 12,
        "massive_non_bos": 4,
        "max_top1_over_median": 2000.0,
        "first_mlp_layer": 1,
        "cosine_bos_sink": 0.95,
        "cosine_bos_nonsink": 0.2,
        "cosine_bos_modality_sink": 0.95,
        "cosine_bos_modality_nonsink": 0.2,
        "utterances": 64,
    }
    row |= figures
    # BOS alone, unless other tokens carrying a massive activation share its sink
    row.setdefault("massive_token_sink_share_percent", row["bos_sink_share_percent"])
    return row


def wer_row(task: str, rates: str, method: str, wer: float, seed: int = 0, condition: str = "clean") -> dict:
    row = dict.fromkeys(WER_COLUMNS, 0)
    return row | {
        "experiment": f"{task.lower()}-{rates}-{method}-s{seed}",
        "task": task,
        "rates": rates,
        "method": method,
        "seed": seed,
        "condition": condition,
        "wer_percent": wer,
    }


def verdicts(table: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {row.claim: (row.verdict, row.holds_in) for row in table.itertuples()}


def test_a_run_like_the_papers_reproduces_every_claim() -> None:
    sinks, wer = [], []
    for rates, base_wer, decorr_wer in (("a4", 3.0, 3.5), ("a32", 13.0, 11.5)):
        sinks += [
            sink_row("ASR", rates, "baseline"),
            sink_row("ASR", rates, "decorr", sinks_modality=0.5, massive_non_bos=0),
        ]
        wer += [
            wer_row("ASR", rates, "baseline", base_wer),
            wer_row("ASR", rates, "decorr", decorr_wer),
            wer_row("ASR", rates, "act", base_wer + 1.0),
            wer_row("ASR", rates, "decorr", 99.0, condition="babble0db"),  # only clean counts
        ]
    table = claims_table(pd.DataFrame(sinks, columns=SINK_COLUMNS), pd.DataFrame(wer))
    assert {v for v, _ in verdicts(table).values()} == {"reproduced"}
    rows = table.set_index("claim")
    # Each task's highest rate for "lower WER", its lowest for "stable", and within the 1-point tolerance.
    assert (
        rows.loc["It lowers WER at high compression", "evidence"] == "ASR a32: baseline 13.00 -> decorr 11.50"
    )
    assert rows.loc["while staying stable at low compression", "holds_in"] == "1 of 1"
    assert rows.loc["It beats ACT", "holds_in"] == "2 of 2"


def test_a_run_without_massive_activations_says_so_and_cannot_test_their_origin() -> None:
    sinks = [
        sink_row("VSR", "v2", "baseline", bos_sink_share_percent=10.0, massive_activations=0,
                 max_top1_over_median=20.0, first_mlp_layer=None, cosine_bos_modality_sink=0.3),
        sink_row("AVSR", "a4v2", "baseline", massive_activations=0, max_top1_over_median=25.0,
                 first_mlp_layer=None, cosine_bos_modality_sink=None, cosine_bos_modality_nonsink=None),
    ]  # fmt: skip
    wer = [wer_row("VSR", "v2", "baseline", 90.0), wer_row("AVSR", "a4v2", "baseline", 20.0)]
    got = verdicts(claims_table(pd.DataFrame(sinks, columns=SINK_COLUMNS), pd.DataFrame(wer)))
    assert got["Attention sinks appear at BOS in ASR, VSR and AVSR"] == ("partly", "1 of 2")
    assert got["Massive activations appear"] == ("not reproduced", "0 of 2")
    assert got["They originate in the MLP of an early layer"] == ("not testable", "0 of 0")
    # A setting with no intermediate sink has no sink cosine to judge.
    assert got["Intermediate sinks' hidden states align with BOS's"] == ("not reproduced", "0 of 1")
    for claim in ("The decorrelation loss removes intermediate sinks", "It beats ACT"):
        assert got[claim] == ("not testable", "0 of 0")
    # One rate per task: high against low compression cannot be told apart.
    assert got["It lowers WER at high compression"] == ("not testable", "0 of 0")


@pytest.mark.parametrize(("decorr_wer", "verdict"), [(4.0, "reproduced"), (4.01, "not reproduced")])
def test_stable_at_low_compression_allows_one_point(decorr_wer: float, verdict: str) -> None:
    sinks = [sink_row("ASR", r, m) for r in ("a4", "a16") for m in ("baseline", "decorr")]
    wer = [wer_row("ASR", "a4", "baseline", 3.0), wer_row("ASR", "a4", "decorr", decorr_wer)]
    wer += [wer_row("ASR", "a16", "baseline", 5.0), wer_row("ASR", "a16", "decorr", 4.0)]
    got = verdicts(claims_table(pd.DataFrame(sinks, columns=SINK_COLUMNS), pd.DataFrame(wer)))
    assert got["while staying stable at low compression"][0] == verdict


def test_seeds_are_averaged_before_a_claim_is_read(tmp_path: Path) -> None:
    sinks = [
        sink_row("ASR", "a4", "baseline", seed=s, bos_sink_share_percent=p) for s, p in ((0, 40), (1, 70))
    ]
    wer = [wer_row("ASR", "a4", "baseline", 3.0)]
    sinks_csv, wer_csv = tmp_path / "sinks.csv", tmp_path / "wer.csv"
    pd.DataFrame(sinks, columns=SINK_COLUMNS).to_csv(sinks_csv, index=False)
    pd.DataFrame(wer).to_csv(wer_csv, index=False)
    table = write_claims_tables(sinks_csv, wer_csv, tmp_path / "claims.csv", tmp_path / "claims.md")
    bos = table.set_index("claim").loc["Attention sinks appear at BOS in ASR, VSR and AVSR"]
    assert (bos["verdict"], bos["evidence"]) == ("reproduced", "ASR a4: 55% of heads")
    assert pd.read_csv(tmp_path / "claims.csv")["verdict"].tolist() == table["verdict"].tolist()
    assert "| Attention sinks appear at BOS" in (tmp_path / "claims.md").read_text()


def test_intermediate_sink_claims_read_the_modality_blocks() -> None:
    """Sinks in the response or prompt alone, or BOS-aligned only outside the modality blocks, do not
    make the intermediate-sink claims hold; decorr that removes only those removes nothing claimed."""
    base = sink_row("ASR", "a4", "baseline", intermediate_sinks=6.0, sinks_modality=0.0, sinks_prompt=1.0,
                    sinks_response=5.0, cosine_bos_sink=0.95, cosine_bos_modality_sink=None,
                    cosine_bos_modality_nonsink=0.1, massive_non_bos=0)  # fmt: skip
    decorr = sink_row("ASR", "a4", "decorr", intermediate_sinks=1.0, sinks_modality=0.0, massive_non_bos=0)
    got = verdicts(
        claims_table(
            pd.DataFrame([base, decorr], columns=SINK_COLUMNS), pd.DataFrame([], columns=WER_COLUMNS)
        )
    )
    assert got["and at intermediate, low-semantic tokens"] == ("not reproduced", "0 of 1")
    assert got["Intermediate sinks' hidden states align with BOS's"] == ("not testable", "0 of 0")
    assert got["The decorrelation loss removes intermediate sinks"] == ("not testable", "0 of 0")
    assert got["and massive activations"] == ("not testable", "0 of 0")


def test_decorrelation_is_judged_on_modality_sinks_and_non_bos_massive_activations() -> None:
    base = sink_row("ASR", "a4", "baseline", sinks_modality=4.0, massive_non_bos=10, intermediate_sinks=4.0)
    decorr = sink_row("ASR", "a4", "decorr", sinks_modality=5.0, massive_non_bos=2, intermediate_sinks=1.0,
                      max_top1_over_median=5000.0)  # fmt: skip
    table = claims_table(
        pd.DataFrame([base, decorr], columns=SINK_COLUMNS), pd.DataFrame([], columns=WER_COLUMNS)
    )
    got = verdicts(table)
    assert got["The decorrelation loss removes intermediate sinks"] == ("not reproduced", "0 of 1")
    assert got["and massive activations"] == ("reproduced", "1 of 1")
    evidence = table.set_index("claim").loc["and massive activations", "evidence"]
    assert evidence == "ASR a4: non-BOS massive 10 -> 2"


def test_a_sink_spread_over_the_massive_tokens_fails_the_bos_claim_and_is_named_in_its_evidence() -> None:
    sinks = [
        sink_row("ASR", "a4", "baseline", bos_sink_share_percent=4.1, massive_token_sink_share_percent=91.2),
        sink_row("VSR", "v5", "baseline"),
    ]
    wer = [wer_row("ASR", "a4", "baseline", 17.4), wer_row("VSR", "v5", "baseline", 85.7)]
    rows = claims_table(pd.DataFrame(sinks, columns=SINK_COLUMNS), pd.DataFrame(wer)).set_index("claim")
    claim = rows.loc["Attention sinks appear at BOS in ASR, VSR and AVSR"]
    assert (claim["verdict"], claim["holds_in"]) == ("partly", "1 of 2")
    assert claim["evidence"] == (
        "ASR a4: 4% of heads, 91% with the tokens that share its massive activation (no); "
        "VSR v5: 80% of heads"
    )
