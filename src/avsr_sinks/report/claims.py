"""The paper's claims (PAPER.md section 1) checked against a run: for each claim, the criterion it is
read by, the settings it holds in, and the numbers behind the verdict.

Read from the run's two tables: ``results/tables/sinks.csv`` (the analysis of every experiment) and
``results/tables/wer.csv`` (clean condition). Seeds are averaged per (task, rates, method) first. A claim
is "reproduced" when it holds in every setting it can be checked in, "not reproduced" in none, "partly"
in between, and "not testable" where the run has nothing to check it on (say, no decorrelation runs).
The criteria put numbers on the paper's words; each is stated in the table beside its verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from avsr_sinks.io import write_text_atomic
from avsr_sinks.report.summary import MAIN_CONDITION, SETTING
from avsr_sinks.report.tables import COSINE_FROM_LAYER

# BOS is "the" sink in the paper's maps: a sink in most heads.
BOS_SINK_MAJORITY_PERCENT = 50.0
# "Cosine similarity close to 1 with the BOS hidden state".
SINK_COSINE_CLOSE_TO_ONE = 0.9
# "Early layer (layer 2)": the MLP that first writes the massive features sits at this layer or before.
EARLY_LAYER = 2
# "Stable at low compression": the decorrelation loss costs at most this many WER points there.
STABLE_WER_POINTS = 1.0

CLAIM_COLUMNS = ["claim", "criterion", "holds_in", "verdict", "evidence"]


@dataclass(frozen=True)
class Setting:
    """One (task, rates) of the run, its methods' seed-averaged sink figures and clean WER."""

    task: str
    rates: str
    sinks: dict[str, pd.Series]  # method -> row of the seed-averaged sinks table
    wer: dict[str, float]  # method -> mean clean WER (%)

    @property
    def name(self) -> str:
        return f"{self.task} {self.rates}"


# A check returns None where the setting cannot show the claim, else (holds, the numbers behind it).
Check = Callable[[Setting], tuple[bool, str] | None]


def _rate_key(rates: str) -> tuple[int, ...]:
    """a16v5 -> (16, 5): orders a task's settings from low to high compression."""
    digits = "".join(c if c.isdigit() else " " for c in rates)
    return tuple(int(d) for d in digits.split())


def read_settings(sinks: pd.DataFrame, wer: pd.DataFrame) -> list[Setting]:
    numeric = sinks.select_dtypes("number").columns.difference(["seed"])
    mean_sinks = sinks.groupby([*SETTING, "method"])[list(numeric)].mean()
    clean = wer[wer["condition"] == MAIN_CONDITION]
    mean_wer = clean.groupby([*SETTING, "method"])["wer_percent"].mean()
    settings = []
    pairs = set(mean_sinks.index.droplevel("method")) | set(mean_wer.index.droplevel("method"))
    for task, rates in sorted(pairs, key=lambda pair: (pair[0], _rate_key(pair[1]))):
        settings.append(
            Setting(
                task,
                rates,
                {m: row for (t, r, m), row in mean_sinks.iterrows() if (t, r) == (task, rates)},
                {m: w for (t, r, m), w in mean_wer.items() if (t, r) == (task, rates)},
            )
        )
    return settings


def _baseline(check: Callable[[pd.Series], tuple[bool, str] | None]) -> Check:
    return lambda s: check(s.sinks["baseline"]) if "baseline" in s.sinks else None


def _bos_sink(row: pd.Series) -> tuple[bool, str]:
    """Judged on BOS alone; where other tokens carrying a massive activation share the sink with it, the
    evidence also gives the share of heads in which they are a sink together."""
    share, together = row["bos_sink_share_percent"], row["massive_token_sink_share_percent"]
    evidence = f"{share:.0f}% of heads"
    if round(together) > round(share):
        evidence += f", {together:.0f}% with the tokens that share its massive activation"
    return share >= BOS_SINK_MAJORITY_PERCENT, evidence


def _intermediate_sinks(row: pd.Series) -> tuple[bool, str]:
    return (
        row["sinks_modality"] > 0,
        f"{row['sinks_modality']:.1f} per utterance in the modality blocks "
        f"({row['intermediate_sinks']:.1f} in all)",
    )


def _massive(row: pd.Series) -> tuple[bool, str]:
    return (
        row["massive_activations"] > 0,
        f"{row['massive_activations']:.0f} (largest top-1/median {row['max_top1_over_median']:.0f})",
    )


def _early_mlp(row: pd.Series) -> tuple[bool, str] | None:
    if not row["massive_activations"] > 0:
        return None  # nothing to trace back to an MLP
    layer = row["first_mlp_layer"]
    if pd.isna(layer):
        return False, "no MLP output carries them"
    return layer <= EARLY_LAYER, f"layer {layer:.0f}"


def _sink_cosine(row: pd.Series) -> tuple[bool, str] | None:
    sink, other = row["cosine_bos_modality_sink"], row["cosine_bos_modality_nonsink"]
    if pd.isna(sink):
        return None
    return sink >= SINK_COSINE_CLOSE_TO_ONE, f"{sink:.2f} (other tokens {other:.2f})"


def _decorr_against(column: str, label: str, fmt: str) -> Check:
    """decorr below baseline in ``column``, where the baseline has any (nothing to remove otherwise)."""

    def check(s: Setting) -> tuple[bool, str] | None:
        if not {"baseline", "decorr"} <= set(s.sinks) or not s.sinks["baseline"][column] > 0:
            return None
        base, decorr = s.sinks["baseline"][column], s.sinks["decorr"][column]
        return decorr < base, f"{label} {base:{fmt}} -> {decorr:{fmt}}"

    return check


def _wer_check(ours: str, against: str, tolerance: float | None = None) -> Check:
    """``ours`` below ``against``, or with a ``tolerance``, at most that many points above it."""

    def check(s: Setting) -> tuple[bool, str] | None:
        if not {ours, against} <= set(s.wer):
            return None
        mine, theirs = s.wer[ours], s.wer[against]
        holds = mine < theirs if tolerance is None else mine <= theirs + tolerance
        return holds, f"{against} {theirs:.2f} -> {ours} {mine:.2f}"

    return check


def _at_rate(settings: list[Setting], highest: bool, check: Check) -> Check:
    """``check`` only at each task's highest (or lowest) compression among its settings."""
    chosen = {}
    for task in {s.task for s in settings}:
        rates = sorted((s.rates for s in settings if s.task == task), key=_rate_key)
        chosen[task] = rates[-1] if highest else rates[0]
    return lambda s: check(s) if chosen[s.task] == s.rates else None


def claims(settings: list[Setting]) -> list[tuple[str, str, Check]]:
    """(claim, criterion, check) in the order of the paper's abstract."""
    multi_rate = {s.task for s in settings if sum(t.task == s.task for t in settings) > 1}

    def several_rates(check: Check) -> Check:
        return lambda s: check(s) if s.task in multi_rate else None

    return [
        (
            "Attention sinks appear at BOS in ASR, VSR and AVSR",
            f"baseline: BOS a sink in at least {BOS_SINK_MAJORITY_PERCENT:g}% of heads (mean over layers "
            "2 to L-2)",
            _baseline(_bos_sink),
        ),
        (
            "and at intermediate, low-semantic tokens",
            "baseline: intermediate sink tokens per utterance in the modality blocks (delimiters and feature "
            "tokens) above 0",
            _baseline(_intermediate_sinks),
        ),
        (
            "Massive activations appear",
            "baseline: at least one entry past both massive-activation thresholds",
            _baseline(_massive),
        ),
        (
            "They originate in the MLP of an early layer",
            f"baseline with massive activations: the first MLP writing them at layer {EARLY_LAYER} or before",
            _baseline(_early_mlp),
        ),
        (
            "Intermediate sinks' hidden states align with BOS's",
            f"baseline: cosine with BOS of the intermediate sinks in the modality blocks at least "
            f"{SINK_COSINE_CLOSE_TO_ONE:g} (mean over layers {COSINE_FROM_LAYER} and up)",
            _baseline(_sink_cosine),
        ),
        (
            "The decorrelation loss removes intermediate sinks",
            "decorr has fewer intermediate sinks per utterance in the modality blocks than baseline (where "
            "baseline has some)",
            _decorr_against("sinks_modality", "modality sinks", ".1f"),
        ),
        (
            "and massive activations",
            "decorr has fewer massive activations at tokens other than BOS than baseline (where baseline "
            "has some)",
            _decorr_against("massive_non_bos", "non-BOS massive", ".0f"),
        ),
        (
            "It lowers WER at high compression",
            "clean WER of decorr below baseline at each task's highest rate (tasks run at several rates)",
            several_rates(_at_rate(settings, True, _wer_check("decorr", "baseline"))),
        ),
        (
            "while staying stable at low compression",
            f"clean WER of decorr at most {STABLE_WER_POINTS:g} point above baseline at each task's "
            "lowest rate",
            several_rates(_at_rate(settings, False, _wer_check("decorr", "baseline", STABLE_WER_POINTS))),
        ),
        (
            "It beats ACT",
            "clean WER of decorr below ACT's",
            _wer_check("decorr", "act"),
        ),
    ]


def claims_table(sinks: pd.DataFrame, wer: pd.DataFrame) -> pd.DataFrame:
    settings = read_settings(sinks, wer)
    rows = []
    for claim, criterion, check in claims(settings):
        results = [(s, r) for s in settings if (r := check(s)) is not None]
        held = sum(ok for _, (ok, _) in results)
        if not results:
            verdict = "not testable"
        elif held == len(results):
            verdict = "reproduced"
        else:
            verdict = "not reproduced" if held == 0 else "partly"
        evidence = "; ".join(f"{s.name}: {text}{'' if ok else ' (no)'}" for s, (ok, text) in results)
        rows.append(
            {
                "claim": claim,
                "criterion": criterion,
                "holds_in": f"{held} of {len(results)}",
                "verdict": verdict,
                "evidence": evidence or "-",
            }
        )
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def write_claims_tables(sinks_csv: Path, wer_csv: Path, csv_path: Path, md_path: Path) -> pd.DataFrame:
    table = claims_table(pd.read_csv(sinks_csv), pd.read_csv(wer_csv))
    write_text_atomic(csv_path, table.to_csv(index=False))
    note = (
        "Each claim of the paper's abstract, the criterion it is read by, and the settings (task, rates) "
        f"it holds in, from `{sinks_csv.name}` and `{wer_csv.name}` ({MAIN_CONDITION} test set; seeds "
        "averaged). "
        "Evidence marked (no) is a setting where the criterion fails.\n\n"
    )
    write_text_atomic(
        md_path, "# The paper's claims on this run\n\n" + note + table.to_markdown(index=False) + "\n"
    )
    return table
