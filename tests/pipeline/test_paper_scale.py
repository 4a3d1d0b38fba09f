"""The paper-scale code path without the paper's files: configs/paper.yaml run end to end through
Snakemake on tiny random models of the paper's classes, and the errors that name a missing model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from avsr_sinks.data.manifest import read_split
from avsr_sinks.data.synth import SPLITS, SynthConfig, generate_corpus
from tests.conftest import usable_list
from tests.pipeline.paper_models import save_tiny_avhubert_checkpoint, save_tiny_llama, save_tiny_whisper
from tests.pipeline.workspace import make_workspace, run, snakemake

# AVSR alone: it reads both paper encoders; its audio path is the ASR experiments' (the ci run covers ASR).
EXPERIMENT = "avsr-a16v5-baseline-s0"
PAPER = ["params.yaml", "configs/paper.yaml"]


def tiny_paper_overlay(files: Path) -> dict[str, Any]:
    """Shrinks configs/paper.yaml to seconds: its local-folder sources and external corpus stay, pointed
    at tiny stand-ins; two training steps (the checkpoint averages both), one decode."""
    return {
        "runtime": {"threads": 1},
        "grid": {"asr_audio_rates": [], "vsr_video_rates": [], "avsr_rates": [[16, 5]]},
        "corpus": {"name": "tiny-paper", "root": str(files / "lrs3")},
        # The random stand-ins are not the hub models the paper names.
        "audio_encoder": {
            "path": str(files / "whisper-medium.en"),
            "hub_id": None,
            "name": "whisper-random",
            "batch_size": 4,
        },
        "llm": {"path": str(files / "Llama-3.2-3B"), "hub_id": None},
        "video_encoder": {"checkpoint": str(files / "large_vox_iter5.pt"), "batch_size": 2},
        "model": {"projector_hidden": 32, "lora_rank": 2, "lora_alpha": 0.25},
        "train": {
            "epochs": 2,
            "checkpoint_every": 1,
            "average_last": 2,
            # the paper's noisy training view, with white noise: babble needs more speakers than 2
            "augment": {"noise": {"kind": "white"}},
        },
        "decode": {"beam_size": 2, "max_new_tokens": 4},
        "evaluate": {"conditions": ["clean"]},  # babble needs more training speakers than 2
    }


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The workspace and the stand-in files after one Snakemake run of the tiny paper configuration."""
    files = tmp_path_factory.mktemp("paper-files")
    # Written in the Llama-AVSR label format, like LRS3, and read in place as an external corpus.
    synth = SynthConfig(n_train=4, n_val=1, n_test=1, n_speakers=2, min_words=3, max_words=5, vocab_size=300)
    generate_corpus(synth, files / "lrs3")
    save_tiny_whisper(files / "whisper-medium.en")
    sentences = [u.transcript for s in SPLITS for u in read_split(files / "lrs3", s, check_media=False)]
    save_tiny_llama(files / "Llama-3.2-3B", sentences)
    save_tiny_avhubert_checkpoint(files / "large_vox_iter5.pt")
    work = make_workspace(tmp_path_factory.mktemp("paper-run"))
    (work / "configs/tiny-paper.yaml").write_text(yaml.safe_dump(tiny_paper_overlay(files)))
    result = snakemake(["--cores", "2", "--configfile", *PAPER[1:], "configs/tiny-paper.yaml"], work)
    assert result.returncode == 0, result.stderr[-4000:]
    return work, files


@pytest.mark.slow
def test_paper_configuration_runs_end_to_end_on_tiny_models(paper_run: tuple[Path, Path]) -> None:
    work, files = paper_run
    table = pd.read_csv(work / "results/tables/wer.csv")
    methods = ("baseline", "decorr", "act")
    expected = sorted(EXPERIMENT.replace("baseline", m) for m in methods)
    assert sorted(table["experiment"]) == expected and (table["utterances"] == 1).all()
    heads = json.loads((work / f"results/act/{EXPERIMENT.replace('baseline', 'act')}/heads.json").read_text())
    assert heads["metric"] == "wer" and heads["utterances"] == 1
    hyps = pd.read_csv(work / f"results/eval/{EXPERIMENT}/clean.hyp.csv")
    assert len(hyps) == 1 and hyps["reference"].str.len().min() > 0
    ckpt = work / f"results/checkpoints/{EXPERIMENT}"
    stored = json.loads((ckpt / "experiment.json").read_text())
    assert stored["summary"]["steps"] == 2 and stored["summary"]["averaged_steps"] == [1, 2]
    assert stored["train"]["average_last"] == 2 and stored["llm"]["source"] == "local"
    assert stored["audio_features"]["encoder"]["source"] == str(files / "whisper-medium.en")
    assert stored["model"]["lora_targets"] == ["q_proj", "v_proj"]
    assert stored["noisy_audio_features"]["condition"] == "white-5_0_5_10_15_20db"
    assert stored["train"]["time_mask_max_seconds"] == 0.4
    assert len(pd.read_csv(ckpt / "train_log.csv")) == 2
    assert not (work / f"results/resume/{EXPERIMENT}").exists()
    assert stored["video_features"]["encoder"]["name"] == "avhubert-large"
    assert stored["video_encoder"]["source"] == "fairseq"
    # Settings of the embedded default alone stay out of the paper's records (changing them reruns nothing).
    assert "synth" not in stored["corpus"] and "pretrain" not in stored["video_encoder"]
    assert "wheel" not in stored["llm"] and "random_init" not in stored["llm"]
    # The paper path builds none of the embedded default's corpus or models, only the converted AV-HuBERT.
    assert [p.name for p in (work / "data/models").iterdir()] == ["avhubert-large"]
    assert not (work / "data/corpus").exists()


@pytest.mark.slow
def test_paper_train_job_names_the_missing_llm(paper_run: tuple[Path, Path]) -> None:
    work, files = paper_run
    missing_llm = {"llm": {"path": "data/external/Llama-3.2-3B", "hub_id": "meta-llama/Llama-3.2-3B"}}
    (work / "configs/missing-llm.yaml").write_text(yaml.safe_dump(missing_llm))
    features = work / "data/features/tiny-paper"
    config = [*PAPER, "configs/tiny-paper.yaml", "configs/missing-llm.yaml"]
    result = run(
        ["python", "workflow_scripts/train.py", "--params", *config, "--experiment", EXPERIMENT]
        + ["--corpus-dir", str(files / "lrs3")]
        + ["--features", f"audio={features / 'whisper-random-w30/train-clean'}"]
        + ["--features", f"video={features / 'avhubert-large/train-clean'}"]
        + ["--utterances", str(usable_list(files / "lrs3", "train", work / "lists"))]
        + ["--lm-dir", "data/external/Llama-3.2-3B", "--out-dir", "results/unused"],
        work,
    )
    assert result.returncode != 0
    assert (
        "llm.path: data/external/Llama-3.2-3B does not exist: put the Hugging Face folder of "
        "meta-llama/Llama-3.2-3B there (config.json, model.safetensors or its shards, tokenizer.json, "
        "tokenizer_config.json) or set llm.path"
    ) in result.stderr


@pytest.mark.slow
def test_paper_features_job_names_the_missing_whisper(tmp_path: Path) -> None:
    work = make_workspace(tmp_path / "work")
    result = run(
        ["python", "workflow_scripts/extract_features.py", "--params", *PAPER]
        + ["--modality", "audio", "--corpus-dir", "data/external/lrs3"]
        + ["--utterances", "data/checked/lrs3/train.media.csv"]
        + ["--encoder-dir", "data/external/whisper-medium.en"]
        + ["--split", "train", "--condition", "clean", "--out-dir", "data/features/unused"],
        work,
    )
    assert result.returncode != 0
    assert (
        "audio_encoder.path: data/external/whisper-medium.en does not exist: put the Hugging Face folder of "
        "openai/whisper-medium.en there (config.json, model.safetensors, preprocessor_config.json) or set "
        "audio_encoder.path"
    ) in result.stderr
