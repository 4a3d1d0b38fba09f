"""The run spec: the records depend on exactly the params keys the spec reads, the records, triggers and
dvc.yaml's params agree, and embedded-only settings never reach a paper-scale record."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import build_grid, parse_name
from avsr_sinks.settings.spec import resolve_run
from avsr_sinks.workflow.dvc_experiment_stages import spec_keys
from tests.conftest import REPO

DEFAULT = [REPO / "params.yaml"]
PAPER = [REPO / "params.yaml", REPO / "configs/paper.yaml"]


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def changed(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A copy of params with the value at ``key`` changed to another of a plausible type."""
    params = copy.deepcopy(params)
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    value = node[last]
    if isinstance(value, bool):
        node[last] = not value
    elif isinstance(value, (int, float)):
        node[last] = value + 1
    elif isinstance(value, str):
        node[last] = value + "-other"
    elif isinstance(value, list):
        node[last] = [*value, value[0]] if value else ["asr"]
    else:  # None or an empty mapping
        node[last] = {"other": 1}
    return params


def record_or_error(params: Mapping[str, Any], name: str) -> str:
    try:
        return json.dumps(resolve_run(params, parse_name(name)).eval_record(), sort_keys=True)
    except (ValueError, KeyError, TypeError) as err:  # the changed value makes the spec unresolvable
        return f"error: {err}"


@pytest.mark.parametrize(
    ("files", "name"),
    [
        (DEFAULT, "asr-a4-decorr-s0"),
        (DEFAULT, "avsr-a4v5-act-s0"),
        (DEFAULT, "vsr-v5-baseline-s0"),
        (PAPER, "avsr-a16v5-decorr-s0"),
        (PAPER, "vsr-v2-act-s0"),
    ],
)
def test_a_record_depends_on_exactly_the_keys_its_spec_reads(files: list[Path], name: str) -> None:
    """Change every setting in turn: the evaluation record changes exactly when the spec read the key
    (or a section above it), so dvc.yaml's params keys and the records rerun the same stages."""
    params = load_params(files)
    spec = resolve_run(params, parse_name(name))
    read = set(spec.train_keys + spec.decode_keys)
    before = json.dumps(spec.eval_record(), sort_keys=True)
    wrong = []
    for key in leaves(params):
        if key.startswith("grid."):  # the grid decides which experiments exist, not their settings
            continue
        is_read = any(key == k or key.startswith(k + ".") for k in read)
        if (record_or_error(changed(params, key), name) != before) != is_read:
            wrong.append(f"{key}: {'read but ignored' if is_read else 'not read but changes the record'}")
    assert not wrong, "\n".join(wrong)
    assert {"corpus.name", "model.prompts." + spec.experiment.task, "decode.beam_size"} <= read


def test_embedded_only_settings_leave_every_paper_record_unchanged() -> None:
    paper = load_params(PAPER)
    embedded_only = {
        "corpus.synth.n_train": 10,
        "video_encoder.pretrain.epochs": 9,
        "llm.wheel": "elsewhere.whl",
        "train.ctc_classes": "vocabulary",  # the paper has no CTC loss
        "llm.random_init": {
            "layers": 2,
            "hidden": 32,
            "heads": 2,
            "kv_heads": 1,
            "intermediate": 64,
            "seed": 0,
        },
    }
    other = copy.deepcopy(paper)
    for key, value in embedded_only.items():
        *parents, last = key.split(".")
        node = other
        for part in parents:
            node = node[part]
        node[last] = value
    for experiment in build_grid(paper):
        assert resolve_run(other, experiment).eval_record() == resolve_run(paper, experiment).eval_record()
    # The embedded default does read them: the same change moves its records.
    default, changed_default = load_params(DEFAULT), load_params(DEFAULT)
    changed_default["corpus"]["synth"]["n_train"] = 10
    vsr = parse_name("vsr-v5-baseline-s0")
    assert resolve_run(changed_default, vsr).train_record() != resolve_run(default, vsr).train_record()


def test_dvc_yaml_params_are_the_keys_the_specs_read() -> None:
    params = load_params(DEFAULT)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    decorr = [e for e in build_grid(params) if e.task == "asr" and e.method == "decorr"]
    # the decorr runs continue their baselines (decorr.branch_at): a foreach stage that names each one's
    decorr_params = stages["train_asr_decorr"]["do"]["params"]
    assert decorr_params == spec_keys(params, decorr, decoding=False)
    assert "decorr.lambda" in decorr_params
    assert "decorr.lambda" not in stages["train_asr_baseline"]["params"]
    act = [e for e in build_grid(params) if e.task == "asr" and e.method == "act"]
    assert stages["evaluate_asr_act"]["params"] == spec_keys(params, act, decoding=True)
    assert "act.beta" in stages["evaluate_asr_act"]["params"]
