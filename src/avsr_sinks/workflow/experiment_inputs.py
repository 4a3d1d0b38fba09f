"""What the scripts that train, decode or analyse one experiment read: their arguments, the corpus check's
list of a split with its cached features, and the experiment's checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from avsr_sinks.data.validation import read_usable
from avsr_sinks.features.store import FeatureDataset, FeatureStore
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.checkpoints import load_checkpoint
from avsr_sinks.settings.grid import Experiment, parse_name
from avsr_sinks.settings.spec import RunSpec, resolve_run
from avsr_sinks.workflow.cli import modality_path, parser


def add_split_arguments(ap: argparse.ArgumentParser) -> None:
    """The experiment and what it reads of one split: the corpus, the check's list, the feature caches."""
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--utterances", type=Path, required=True, help="the corpus check's list of the split")
    ap.add_argument("--features", type=modality_path, action="append", default=[], metavar="MODALITY=PATH")


def checkpoint_parser(description: str) -> argparse.ArgumentParser:
    """``parser`` plus what a script that runs one experiment's checkpoint on a split reads."""
    ap = parser(description)
    add_split_arguments(ap)
    ap.add_argument("--checkpoint", type=Path, required=True)
    return ap


def split_dataset(args: argparse.Namespace, experiment: Experiment) -> FeatureDataset:
    """The split's usable utterances with their cached features (``add_split_arguments``' arguments)."""
    transcripts = {u.uid: u.transcript for u in read_usable(args.utterances, args.corpus_dir)}
    return FeatureDataset(feature_stores(args.features, experiment.modalities), transcripts)


def checkpoint_on_split(
    args: argparse.Namespace, params: dict[str, Any]
) -> tuple[RunSpec, FeatureDataset, AVSRModel]:
    """The experiment's run spec, the split's utterances with their cached features, and the loaded
    checkpoint (``checkpoint_parser``'s arguments)."""
    spec = resolve_run(params, parse_name(args.experiment))
    dataset = split_dataset(args, spec.experiment)
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    return spec, dataset, load_checkpoint(args.checkpoint, spec, widths)


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
