"""decorr.branch_at: a baseline keeps its training state at the branch step, and its decorr run continues
from that state over the same batches with the decorrelation loss added."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import branch_source, resolve_run, warm_start_sources
from avsr_sinks.training import train
from tests.conftest import REPO
from tests.train_job import CONFIG, make_features, toy_model_config

BASELINE = dataclasses.replace(
    CONFIG, epochs=2, ctc_weight=0.0, ctc_warmup_steps=0, average_last=1, checkpoint_every=100, branch_at=0.5
)
DECORR = dataclasses.replace(BASELINE, decorr_lambda=10.0)
BASELINE_RECORD = {"experiment": "toy-baseline", "method": "baseline", "train": {"lr": 1e-3}}
DECORR_RECORD = {
    "experiment": "toy-decorr",
    "method": "decorr",
    "decorr": {"weight": 10.0},
    "train": {"lr": 1e-3, "branch_from": "toy-baseline"},
}


def run(
    lm_dir: Path,
    data: Path,
    out: Path,
    cfg: train.TrainConfig,
    record: dict,
    branch_from: Path | None = None,
) -> dict:
    transcripts = make_features(data)
    dataset = FeatureDataset({"audio": FeatureStore(data)}, transcripts)
    model = AVSRModel(toy_model_config(None), *load_llm(lm_dir))
    return train.train(
        model,
        dataset,
        cfg,
        out,
        record,
        resume_dir=out.parent / f"{out.name}-resume",
        branch_from=branch_from,
    )


def log(folder: Path) -> list[dict[str, str]]:
    with (folder / "train_log.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def baseline(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("branch")
    # A module fixture runs before the autouse seeding: one thread as in the tests, or the sums of the steps
    # after the branch would round differently.
    torch.set_num_threads(1)
    run(tiny_lm_dir, root / "data", root / "baseline", BASELINE, BASELINE_RECORD)
    return root / "baseline"


def test_the_baseline_keeps_its_state_at_the_branch_step(baseline: Path) -> None:
    summary = json.loads((baseline / "experiment.json").read_text())["summary"]
    step = summary["branch_step"]
    assert step == round(0.5 * summary["steps"])
    (save,) = (baseline / "branch").iterdir()
    assert json.loads((save / "progress.json").read_text())["step"] == step
    assert not (baseline.parent / "baseline-resume").exists()


def test_a_decorr_run_without_its_loss_ends_where_the_baseline_ends(
    tiny_lm_dir: Path, baseline: Path
) -> None:
    """Weights, optimizer, schedule, random state and batch position all continue: the same loss from the
    branch gives the baseline's final weights bit for bit."""
    out = baseline.parent / "same-loss"
    run(tiny_lm_dir, baseline.parent / "data", out, BASELINE, DECORR_RECORD, branch_from=baseline)
    ours, theirs = load_file(str(out / "model.safetensors")), load_file(str(baseline / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    timeless = [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in log(out)]
    assert timeless == [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in log(baseline)]


def test_a_decorr_run_shares_the_steps_before_the_branch_and_decorrelates_after(
    tiny_lm_dir: Path, baseline: Path
) -> None:
    out = baseline.parent / "decorr"
    summary = run(tiny_lm_dir, baseline.parent / "data", out, DECORR, DECORR_RECORD, branch_from=baseline)
    step = summary["branch_step"]
    rows, base_rows = log(out), log(baseline)
    assert len(rows) == len(base_rows) == summary["steps"]
    assert rows[:step] == base_rows[:step]
    assert all(float(r["decorr_loss"]) > 0 for r in rows[step:])
    ours, theirs = load_file(str(out / "model.safetensors")), load_file(str(baseline / "model.safetensors"))
    assert any(not torch.equal(ours[name], theirs[name]) for name in ours)
    assert not (out / "branch").exists()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            {"record": {**DECORR_RECORD, "train": {"lr": 5e-4}}},
            ValueError,
            r"train\.lr: checkpoint has 0\.001",
        ),
        ({"cfg": dataclasses.replace(DECORR, branch_at=0.25)}, ValueError, "kept its state at step"),
        ({"branch": "plain"}, FileNotFoundError, "no branch state"),
    ],
)
def test_a_decorr_run_refuses_a_baseline_it_cannot_continue(
    tiny_lm_dir: Path, baseline: Path, change: dict, error: type, match: str
) -> None:
    branch_from = baseline
    if change.get("branch") == "plain":
        branch_from = baseline.parent / "plain"
        branch_from.mkdir(exist_ok=True)  # a baseline checkpoint trained without decorr.branch_at
    out = baseline.parent / "refused"
    with pytest.raises(error, match=match):
        run(
            tiny_lm_dir,
            baseline.parent / "data",
            out,
            change.get("cfg", DECORR),
            change.get("record", DECORR_RECORD),
            branch_from=branch_from,
        )
    assert not out.exists()


def test_averaging_saves_from_before_the_branch_is_refused(tiny_lm_dir: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(BASELINE, checkpoint_every=2, average_last=6)  # saves 8 to 16, branch 9
    with pytest.raises(ValueError, match="average fewer saves or branch earlier"):
        run(tiny_lm_dir, tmp_path / "data", tmp_path / "out", cfg, BASELINE_RECORD)


def test_the_spec_continues_each_decorr_run_from_its_baseline() -> None:
    params = load_params([REPO / "params.yaml"])
    params["decorr"]["branch_at"] = 0.75
    decorr = parse_name("avsr-a4v5-decorr-s0")
    assert branch_source(params, decorr) == parse_name("avsr-a4v5-baseline-s0")
    assert warm_start_sources(params, decorr) == []  # its baseline was warm-started
    spec, base = resolve_run(params, decorr), resolve_run(params, parse_name("avsr-a4v5-baseline-s0"))
    assert spec.train == dataclasses.replace(base.train, branch_from="avsr-a4v5-baseline-s0")
    assert base.train.branch_at == 0.75 and base.train.warm_start
    assert branch_source(params, parse_name("avsr-a4v5-act-s0")) is None
    params["grid"]["methods"] = ["decorr"]
    with pytest.raises(ValueError, match="avsr-a4v5-baseline-s0, which is not in the grid"):
        branch_source(params, decorr)
    params["decorr"]["branch_at"] = None
    assert branch_source(params, decorr) is None
