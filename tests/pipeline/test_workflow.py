"""The workflow as a whole: configuration errors stop it early, the paper grid plans without data,
and the ci configuration runs end to end, then has nothing left to do."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.workspace import make_workspace, snakemake


@pytest.mark.slow
def test_ci_configuration_end_to_end(ci_run: tuple[Path, str]) -> None:
    work, _ = ci_run
    table = pd.read_csv(work / "results/tables/wer.csv")
    experiments = [f"{s}-{m}-s0" for s in ("asr-a16", "avsr-a16v5") for m in ("act", "baseline", "decorr")]
    assert sorted(set(table["experiment"])) == experiments
    assert set(table["condition"]) == {"clean", "babble0db"}
    assert (table["wer_percent"] >= 0).all() and (table["utterances"] == 16).all()
    assert "avsr-a16v5-baseline-s0" in (work / "results/tables/wer.md").read_text()
    scores = json.loads((work / "results/eval/avsr-a16v5-baseline-s0/babble0db.json").read_text())
    assert scores["experiment"] == "avsr-a16v5-baseline-s0" and scores["video_rate"] == 5
    assert scores["condition"] == "babble0db"
    for experiment in experiments:
        hyps = pd.read_csv(work / f"results/eval/{experiment}/clean.hyp.csv")
        assert len(hyps) == 16 and hyps["reference"].str.len().min() > 0
    assert not (work / "results/checkpoints/asr-a16-act-s0").exists(), "ACT trains nothing"
    for experiment in [e for e in experiments if "-act-" not in e]:
        ckpt = work / f"results/checkpoints/{experiment}"
        assert {"model.safetensors", "experiment.json", "train_log.csv"} <= {p.name for p in ckpt.iterdir()}
        log = pd.read_csv(ckpt / "train_log.csv")
        summary = json.loads((ckpt / "experiment.json").read_text())["summary"]
        assert len(summary["averaged_steps"]) == 2 and summary["averaged_steps"][-1] == len(log)
        assert summary["mixed_precision"] == "no"  # configs/ci.yaml trains in float32
        # configs/ci.yaml: ASR starts with 4 CTC warm-up steps (no LLM, no cross-entropy), then joint
        # training; AVSR starts from the ASR run's weights, without a warm-up.
        warmup = 0 if experiment.startswith("avsr") else 4
        assert log["loss"].iloc[:warmup].isna().all() and log["loss"].iloc[warmup:].notna().all()
        assert (log["ctc_loss"] >= 0).all()  # 0 where rate 16 leaves fewer tokens than targets
        # configs/ci.yaml keeps decorr.branch_at: each decorr run is its baseline's up to the branch step
        # (the baseline kept its state there), then adds the loss.
        branch = summary["branch_step"]
        if "-decorr-" in experiment:
            baseline = pd.read_csv(
                work / f"results/checkpoints/{experiment.replace('decorr', 'baseline')}/train_log.csv"
            )
            pd.testing.assert_frame_equal(
                log.iloc[:branch].drop(columns="tokens_per_s"),
                baseline.iloc[:branch].drop(columns="tokens_per_s"),
            )
            assert (log["decorr_loss"].iloc[branch:] > 0).all() and warmup < branch < len(log)
        else:
            assert (log["decorr_loss"] == 0).all()
            assert (
                json.loads(next((ckpt / "branch").glob("step-*/progress.json")).read_text())["step"] == branch
            )
    heads = json.loads((work / "results/act/avsr-a16v5-act-s0/heads.json").read_text())
    assert [(c["layer"], c["head"]) for c in heads["candidates"]] == [(2, 0), (2, 1)]  # 4 layers, 2 heads
    act_eval = json.loads((work / "results/eval/avsr-a16v5-act-s0/clean.json").read_text())
    assert act_eval["act_heads"] == heads["kept_heads"] and act_eval["experiment"] == "avsr-a16v5-baseline-s0"
    sinks = pd.read_csv(work / "results/tables/sinks.csv")
    assert sorted(sinks["experiment"]) == experiments and (sinks["utterances"] == 8).all()
    assert sinks["bos_sink_share_percent"].between(0, 100).all()
    assert "Attention sinks" in (work / "results/tables/sinks.md").read_text()
    claims = pd.read_csv(work / "results/tables/claims.csv")
    assert len(claims) == 10 and set(claims["verdict"]) <= {
        "reproduced",
        "partly",
        "not reproduced",
        "not testable",
    }
    main = pd.read_csv(work / "results/tables/main.csv")
    assert sorted(zip(main["rates"], main["method"], strict=True)) == sorted(
        (rates, method) for rates in ("a16", "a16v5") for method in ("act", "baseline", "decorr")
    )
    assert r"\toprule" in (work / "results/tables/main.tex").read_text()
    robustness = pd.read_csv(work / "results/tables/robustness.csv")
    assert set(robustness["snr_db"]) == {float("inf"), 0.0} and len(robustness) == 12
    paper = pd.read_csv(work / "results/tables/paper_vs_reproduced.csv")
    reproduced = paper[paper["reproduced_wer"].notna()]
    compared = set(zip(reproduced["rates"], reproduced["method"], strict=True))
    assert compared == {("a16v5", "baseline"), ("a16v5", "decorr")}
    figures = json.loads((work / "results/figures/index.json").read_text())["figures"]
    assert len(figures) == 2 * (2 * len(experiments) + 3 * 2)  # png + pdf: 2 per experiment, 3 per setting
    assert all((work / f).stat().st_size > 1000 for f in figures)
    record = json.loads((work / "results/checkpoints/avsr-a16v5-baseline-s0/experiment.json").read_text())
    assert record["train"]["warm_start"] == ["asr-a16-baseline-s0"]
    assert record["noisy_audio_features"]["condition"] == "babble-5_0_5_10_15_20db"
    assert record["train"]["noise_probability"] == 0.5
    assert record["video_features"]["encoder"]["name"] == "tiny-video-ci"
    assert record["audio_features"]["condition"] == "clean"
    video = json.loads((work / "results/video_encoder/pretrain.json").read_text())
    assert 0 < video["val"]["frame_accuracy"] <= 1 and video["val"]["frames"] > 0
    noisy = json.loads(
        (work / "data/features/synth-ci/whisper-tiny.en-w10/test-babble0db/manifest.json").read_text()
    )
    assert noisy["condition"] == "babble0db"
    card = json.loads((work / "results/corpus/synth-ci.json").read_text())
    assert card["splits"]["test"]["utterances"] == 16
    whisper = json.loads((work / "results/corpus/synth-ci.whisper.json").read_text())
    assert whisper["utterances"] == 16 and whisper["cer"] < 0.5  # about 0.17 measured on 50 utterances


@pytest.mark.slow
def test_second_run_has_nothing_to_do(ci_run: tuple[Path, str]) -> None:
    work, _ = ci_run
    result = snakemake(["-n", "--cores", "2", "--configfile", "configs/ci.yaml"], work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def _planned_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job in a dry run's listing."""
    jobs, rule = set(), None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            rule = line.split()[1].rstrip(":")
            jobs.add((rule, ""))
        elif line.startswith("wildcards:") and rule is not None:
            jobs.discard((rule, ""))
            jobs.add((rule, line.removeprefix("wildcards:").strip()))
        elif not line:
            rule = None
    return jobs


@pytest.mark.slow
def test_changing_decorr_lambda_replans_only_the_decorrelation_chain(
    ci_run: tuple[Path, str], tmp_path: Path
) -> None:
    """Snakemake's params trigger: the training record of the decorr experiments holds decorr.lambda, so
    they, their evaluations and analyses, and the tables and figures above them run again; nothing else."""
    # A copy: other workers read the shared run meanwhile, and the overlay must stay configs/ci.yaml (the
    # list of config files is itself a parameter of every job).
    work = tmp_path / "work"
    shutil.copytree(ci_run[0], work, symlinks=True)
    overlay = work / "configs/ci.yaml"
    overlay.write_text(overlay.read_text() + "\ndecorr:\n  lambda: 2.5\n")
    result = snakemake(["-n", "--cores", "2", "--configfile", "configs/ci.yaml"], work)
    assert result.returncode == 0, result.stderr[-2000:]
    chain = {
        (rule, f"experiment={setting}-decorr-s0{extra}")
        for setting in ("asr-a16", "avsr-a16v5")
        for rule, extra in [
            ("train", ""),
            ("analyze", ""),
            ("evaluate", ", condition=clean"),
            ("evaluate", ", condition=babble0db"),
        ]
    }
    report = {
        (rule, "")
        for rule in (
            "wer_tables",
            "summary_tables",
            "sink_tables",
            "claims_table",
            "tables_page",
            "figures",
            "all",
        )
    }
    assert _planned_jobs(result.stdout + result.stderr) == chain | report


@pytest.mark.slow
def test_report_is_self_contained_with_captions(ci_run: tuple[Path, str], ci_report: Path) -> None:
    work, _ = ci_run
    html = ci_report.read_text()
    captions = {
        "main": "Main result",
        "robustness": "against signal-to-noise ratio",
        "paper_vs_reproduced": "published WERs beside",
        "figures": "from the arrays the",
        "sinks": "Attention sinks and massive activations per experiment",
        "claims": "The paper's claims, each read by a stated criterion",
    }
    for caption, words in captions.items():
        assert words in (work / f"rules/captions/{caption}.rst").read_text().replace("\n", " ")
        assert words in html, f"the caption of {caption} is missing from the report"
    for figure in (
        "asr-a16-baseline-s0-sinks.png",
        "avsr-a16v5-s0-sink-counts.png",
        "avsr-a16v5-s0-methods.png",
        "avsr-a16v5-s0-topk-by-method.png",
    ):
        assert figure in html
    loads = re.findall(r"""<(?:script|img|link|iframe)[^>]+(?:src|href)=["']https?://[^"']+""", html)
    assert not loads, f"the report loads {loads} from the network"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ("train:\n  epoch: 3\n", "unknown key 'train.epoch'"),
        ("decode:\n  beam_size: wide\n", "key 'decode.beam_size' = 'wide'"),
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_bad_config_stops_before_any_job(tmp_path: Path, overlay: str, expected: str) -> None:
    work = make_workspace(tmp_path / "work")
    (work / "configs/bad.yaml").write_text(overlay)
    result = snakemake(["--cores", "1", "--configfile", "configs/bad.yaml"], work)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert expected in output and "configs/bad.yaml" in output
    # data/ holds only what `make setup` fetched (linked into every workspace)
    assert not (work / "results").exists() and [p.name for p in (work / "data").iterdir()] == ["downloads"]


@pytest.mark.slow
def test_paper_scale_plans_without_its_files(tmp_path: Path) -> None:
    work = make_workspace(tmp_path / "work")
    result = snakemake(["-n", "--cores", "1", "--configfile", "configs/paper.yaml"], work)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for rule in ("audio_features", "video_features", "convert_avhubert", "train", "evaluate", "wer_tables"):
        assert rule in output
    assert "asr-a32-baseline-s0" in output and "avsr-a16v5-baseline-s0" in output
    # The paper scale runs all three methods in every setting, and searches ACT's heads by WER.
    settings = ("asr-a4", "asr-a16", "asr-a32", "vsr-v2", "vsr-v5", "avsr-a4v2", "avsr-a16v5")
    for name in (f"{s}-{m}-s0" for s in settings for m in ("baseline", "decorr", "act")):
        assert f"experiment={name}" in output, name
    assert output.count("rule act_heads:") == len(settings)
    assert "make_corpus" not in output and "pretrain_video_encoder" not in output
