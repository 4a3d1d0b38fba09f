"""Shared fixtures: a seeded torch, the repository root, and a tiny language model of the real class."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer and a 2-layer LlamaForCausalLM, saved like the pretrain_lm rule saves them."""
    from avsr_sinks.lm import LMPretrainConfig, pretrain_lm, train_tokenizer

    sentences = [
        "the cat sat on the mat",
        "a dog runs in the park",
        "we will go home soon",
        "she reads a small book",
        "they play music at night",
    ] * 40
    tokenizer = train_tokenizer(sentences, vocab_size=200)
    cfg = LMPretrainConfig(
        seed=0,
        layers=2,
        hidden=32,
        heads=2,
        intermediate=64,
        seq_len=32,
        batch_size=4,
        steps=5,
        lr=1e-3,
        warmup_steps=1,
        copy_fraction=0.0,
    )
    root = tmp_path_factory.mktemp("lm")
    pretrain_lm(cfg, tokenizer, sentences, sentences[:5], root / "lm", root / "log.csv")
    return root / "lm"


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workspace after ``snakemake --cores 2 --configfile configs/ci.yaml``, once per session: the workflow,
    report, DVC and cluster tests read it. Tests must not change it (copy it first), except for the
    report, which only adds results/report.html."""
    from tests.pipeline.workspace import make_workspace, snakemake

    work = make_workspace(tmp_path_factory.mktemp("ci-run"))
    result = snakemake(["--cores", "2", "--configfile", "configs/ci.yaml"], work, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    return work, result.stderr
