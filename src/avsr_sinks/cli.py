"""What the workflow scripts share: the --params argument, logging and thread settings, and reading one
experiment's checkpoint with the features of a split."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from avsr_sinks.config import load_params
from avsr_sinks.data.manifest import read_split
from avsr_sinks.experiment import load_checkpoint
from avsr_sinks.features import FeatureDataset, FeatureStore
from avsr_sinks.grid import Experiment, parse_name
from avsr_sinks.model import AVSRModel


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--params",
        nargs="+",
        default=["params.yaml"],
        help="params.yaml followed by any overlays, merged in order",
    )
    ap.add_argument("--threads", type=int, help="torch threads (default: runtime.threads in params)")
    return ap


def checkpoint_parser(description: str) -> argparse.ArgumentParser:
    """``parser`` plus what a script that runs one experiment's checkpoint on a split reads."""
    ap = parser(description)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--features", type=modality_path, action="append", default=[], metavar="MODALITY=PATH")
    return ap


def checkpoint_on_split(
    args: argparse.Namespace, params: dict[str, Any], split: str
) -> tuple[Experiment, FeatureDataset, AVSRModel]:
    """The experiment, the split's utterances with their cached features, and the loaded checkpoint
    (``checkpoint_parser``'s arguments)."""
    experiment = parse_name(args.experiment)
    transcripts = {u.uid: u.transcript for u in read_split(args.corpus_dir, split, check_media=False)}
    dataset = FeatureDataset(feature_stores(args.features, experiment.modalities), transcripts)
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    return experiment, dataset, load_checkpoint(args.checkpoint, params, experiment, widths)


def start(args: argparse.Namespace) -> dict[str, Any]:
    """Configure logging and torch threads, then load and validate the configuration."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    torch.set_num_threads(args.threads or params["runtime"]["threads"])
    return params


def modality_path(text: str) -> tuple[str, Path]:
    """``audio=PATH`` or ``video=PATH`` (the ``--features`` arguments of the train and evaluate scripts)."""
    modality, sep, path = text.partition("=")
    if not sep or modality not in ("audio", "video") or not path:
        raise argparse.ArgumentTypeError(f"expected audio=PATH or video=PATH, got {text!r}")
    return modality, Path(path)


def feature_stores(
    pairs: list[tuple[str, Path]], modalities: tuple[str, ...], flag: str = "--features"
) -> dict[str, FeatureStore]:
    """One cache per modality the experiment uses, refusing a missing or extra one."""
    given = dict(pairs)
    if sorted(given) != sorted(modalities) or len(given) != len(pairs):
        raise SystemExit(
            f"{flag}: this experiment reads {', '.join(modalities) or 'no'} features there, got "
            f"{', '.join(m for m, _ in pairs) or 'none'}"
        )
    return {m: FeatureStore(given[m]) for m in modalities}
