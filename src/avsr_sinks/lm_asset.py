"""The embedded default's pretrained LM, shipped with the repository and pinned by SHA-256.

Pretraining the small LM long enough to copy from its prefix (and to grow its sinks) takes longer than
the default run can afford on 2 cores, so the project ships the weights the ``pretrain_lm`` rule
produced. ``llm.source: shipped`` installs them after checking every file's hash and that they were
built under the same LM and corpus settings as the current params; ``llm.source: pretrain`` rebuilds
them with the same rule, and ``make lm-asset`` writes a new asset from such a build.

Asset layout: the model folder's files, the build's reports (``pipeline.lm_report_names``: each phase's
summary and per-step log, as the rules wrote them under ``results/lm``), and ``manifest.json`` holding
the build settings and each file's SHA-256.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avsr_sinks.io import atomic_path, sha256_file, write_json_atomic
from avsr_sinks.pipeline import lm_report_names

MANIFEST = "manifest.json"


def build_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the LM's weights depend on: its pretraining, its tokenizer and the corpus text it reads."""
    llm = params["llm"]
    return {
        "tokenizer_vocab_size": llm["tokenizer_vocab_size"],
        "pretrain": llm["pretrain"],
        "corpus_synth": params["corpus"]["synth"],
    }


def write_asset(
    params: Mapping[str, Any], model_dir: Path, reports_dir: Path, asset_dir: Path
) -> dict[str, Any]:
    """Copy an LM build (``model_dir``, its reports in ``reports_dir``) into ``asset_dir``, replaced whole,
    with its manifest."""
    # dotfiles are the workflow's bookkeeping (Snakemake's .snakemake_timestamp), not the model
    sources = {
        p.name: p for p in sorted(Path(model_dir).iterdir()) if p.is_file() and not p.name.startswith(".")
    }
    for name in lm_report_names(params):
        if not (Path(reports_dir) / name).is_file():
            raise FileNotFoundError(f"{Path(reports_dir) / name}: report of the LM build is missing")
        sources[name] = Path(reports_dir) / name
    with atomic_path(asset_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, source in sources.items():
            shutil.copy2(source, tmp / name)
        manifest = {
            "settings": build_settings(params),
            "sha256": {name: sha256_file(tmp / name) for name in sources},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def install_asset(params: Mapping[str, Any], asset_dir: Path, out_dir: Path, reports_dir: Path) -> None:
    """Check the shipped LM against its manifest and the current settings, then install the model into
    ``out_dir`` and its reports into ``reports_dir``."""
    asset_dir = Path(asset_dir)
    manifest_path = asset_dir / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path}: no shipped LM there; set llm.source: pretrain to build one (or restore the "
            "asset folder from git)"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    wanted = json.loads(json.dumps(build_settings(params)))
    if manifest["settings"] != wanted:
        changed = sorted(
            k
            for k in wanted
            if json.dumps(wanted[k], sort_keys=True)
            != json.dumps(manifest["settings"].get(k), sort_keys=True)
        )
        raise ValueError(
            f"{manifest_path}: the shipped LM was built under other settings ({', '.join(changed)} differ "
            "from params); set llm.source: pretrain to rebuild it under these (see README, Models)"
        )
    for name, digest in manifest["sha256"].items():
        path = asset_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file of the shipped LM is missing (listed in {manifest_path})")
        actual = sha256_file(path)
        if actual != digest:
            raise ValueError(
                f"{path}: SHA-256 {actual} differs from {digest} pinned in {manifest_path}; the file is "
                "damaged or was changed: restore it from git or rebuild with llm.source: pretrain"
            )
    reports = lm_report_names(params)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name in manifest["sha256"]:
            if name not in reports:
                shutil.copy2(asset_dir / name, tmp / name)
    for name in reports:
        target = Path(reports_dir) / name
        if name.endswith(".json"):
            write_json_atomic(
                target, {**json.loads((asset_dir / name).read_text()), "installed_from": str(asset_dir)}
            )
        else:
            with atomic_path(target) as tmp:
                shutil.copy2(asset_dir / name, tmp)
