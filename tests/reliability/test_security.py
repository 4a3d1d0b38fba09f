"""Security rules, checked over the code that runs: safe YAML, no shell with interpolated values, quoted
rule commands, pickle read only through torch's weights-only unpickler, safetensors checkpoints, no
remote code. Refusals of concrete hostile files are catalogue cases (tests/reliability/README.md)."""

from __future__ import annotations

import pickle
import re
import shlex
from pathlib import Path

import pytest
import torch

from avsr_sinks.training import training_state
from tests.conftest import REPO
from tests.pipeline.workspace import make_workspace, snakemake

CODE = sorted(
    [
        *(REPO / "src").rglob("*.py"),
        *(REPO / "workflow_scripts").glob("*.py"),
        *(REPO / "bench").rglob("*.py"),
        *(REPO / "rules").glob("*.smk"),
        REPO / "Snakefile",
    ]
)
# The two readers of third-party torch checkpoints; both list a pickle's globals before loading it.
PICKLE_READERS = {
    "src/avsr_sinks/encoders/fairseq_checkpoint.py",
    "src/avsr_sinks/importers/llama_avsr_checkpoint.py",
}


def occurrences(pattern: str, lines_after: int = 0) -> list[str]:
    """``file:line: text`` of each line matching ``pattern``, with the ``lines_after`` that follow it (the
    rest of a call written over several lines)."""
    found = []
    for path in CODE:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if re.search(pattern, line):
                text = " ".join(part.strip() for part in lines[number - 1 : number + lines_after])
                found.append(f"{path.relative_to(REPO)}:{number}: {text}")
    return found


def test_code_is_scanned() -> None:
    assert len(CODE) > 40 and occurrences(r"yaml\.safe_load\(")


def test_yaml_is_read_with_safe_loading_only() -> None:
    assert (
        occurrences(r"yaml\.(load|unsafe_load|full_load|load_all)\(|yaml\.(Loader|UnsafeLoader|FullLoader)\b")
        == []
    )


def test_no_shell_runs_interpolated_text() -> None:
    assert occurrences(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput\(") == []


def test_pickle_is_read_only_by_the_restricted_readers() -> None:
    assert occurrences(r"\bpickle\.loads?\(|\bUnpickler\(|allow_pickle\s*=\s*True|dill|joblib\.load") == []
    loads = occurrences(r"torch\.load\(")
    assert loads and all("weights_only=True" in line for line in loads), loads
    readers = {line.split(":")[0] for line in loads} - {"src/avsr_sinks/training/training_state.py"}
    assert readers <= PICKLE_READERS, readers


class _WouldWriteAFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing means the pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class _TinyModel(torch.nn.Linear):
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters()}


def test_train_resume_state_is_loaded_weights_only(tmp_path: Path) -> None:
    """A resume folder whose optimizer state is a pickle that would run code is refused, and the code
    never runs; the same folder with the state train saved itself loads."""
    model = _TinyModel(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    record = {"experiment": "toy", "seed": 0}
    resume = tmp_path / "resume"
    resume.mkdir()
    training_state.save_resume(resume, model, optimizer, schedule, 4, record, [], snapshots_kept=0)
    (save,) = resume.iterdir()
    loaded = training_state.load_resume(resume, record)
    assert loaded is not None and loaded["step"] == 4 and "optimizer" in loaded  # the control: it loads

    marker = tmp_path / "pickle-ran-code"
    honest = torch.load(save / "optimizer.pt", weights_only=True)
    torch.save({**honest, "optimizer": _WouldWriteAFile(marker)}, save / "optimizer.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        training_state.load_resume(resume, record)
    assert not marker.exists(), "the resume state was unpickled with code execution allowed"


def test_checkpoints_and_models_are_saved_as_safetensors() -> None:
    saves = occurrences(r"save_pretrained\(")
    model_saves = [line for line in saves if "model.save_pretrained" in line]
    assert model_saves and all("safe_serialization=True" in line for line in model_saves), model_saves
    # torch.save only for the optimizer's resume state, which holds tensors and numbers only.
    assert [line for line in occurrences(r"torch\.save\(") if "training_state.py" not in line] == []


def test_remote_code_is_never_trusted() -> None:
    assert occurrences(r"trust_remote_code\s*=\s*True") == []
    pretrained = occurrences(r"Auto\w+\.from_pretrained\(", lines_after=6)
    assert all("trust_remote_code=False" in line for line in pretrained), pretrained


@pytest.mark.slow
def test_rule_commands_quote_paths_from_the_configuration(tmp_path: Path) -> None:
    """Paths with a space and a quote reach each script as one argument, unchanged."""
    work = make_workspace(tmp_path / "work")
    odd = {"corpus": "data/corpus/my corpus's", "llm": "data/models/lm o'brien"}
    (work / "configs" / "odd.yaml").write_text(
        f'corpus:\n  root: "{odd["corpus"]}"\nllm:\n  path: "{odd["llm"]}"\n'
    )
    result = snakemake(
        ["-n", "-p", "--cores", "1", "--configfile", "configs/ci.yaml", "configs/odd.yaml"], work
    )
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [
        line.removeprefix("Shell command: ")
        for line in result.stdout.splitlines()
        if line.startswith("Shell command: ")
    ]
    assert len(commands) > 20
    seen = set()
    for command in commands:
        for token in shlex.split(command):
            value = token.partition("=")[2] if "=" in token and not token.startswith("data/") else token
            if "corpus/my" in value or "o'brien" in value:
                assert value.rstrip("/") in odd.values() or value.startswith(tuple(odd.values())), command
                seen.add(value)
    assert set(odd.values()) <= seen
