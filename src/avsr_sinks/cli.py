"""What the workflow scripts share: the --params argument, logging and thread settings, reading one
experiment's checkpoint with the features of a split, and turning a failure into a message that says
what to do."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avsr_sinks.config import ConfigError, load_params
from avsr_sinks.data.manifest import DataError, read_split
from avsr_sinks.data.media import MediaError
from avsr_sinks.experiment import load_checkpoint
from avsr_sinks.features import FeatureDataset, FeatureStore
from avsr_sinks.grid import Experiment, parse_name
from avsr_sinks.model import AVSRModel
from avsr_sinks.nonfinite import NonFiniteLossError


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


def model_build_parser(description: str) -> argparse.ArgumentParser:
    """``parser`` plus what a script that builds a model from the corpus writes: the model folder, its
    per-step CSV log and its summary."""
    ap = parser(description)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--log-csv", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True)
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


# An OSError names the file but not what to do; these say it. Every stage writes to a temporary name and
# renames on success, so after any of them nothing under the final name is half-written.
_MACHINE_REMEDIES = {
    errno.ENOSPC: "the disk is full: free space there (or move the output elsewhere), then rerun",
    errno.EDQUOT: "the disk quota is exhausted: free space there (or move the output elsewhere), then rerun",
    errno.EFBIG: "the file size limit was reached: raise it (ulimit -f) or free space, then rerun",
    errno.EROFS: "the file system is read-only: make the output folder writable, then rerun",
    errno.EACCES: "permission denied: make the output folder writable for this user, then rerun",
}
_CORPUS_REMEDY = (
    "repair or remove what is named above, or set corpus.on_bad_sample: skip to leave bad samples out "
    "(each one is listed in the corpus card), then rerun"
)
_INPUT_REMEDIES = {
    ConfigError: "correct the file named above, or the list of configuration files given "
    "(schemas/params.schema.yaml lists every key and what it accepts), then rerun",
    DataError: _CORPUS_REMEDY,
    MediaError: _CORPUS_REMEDY,
    NonFiniteLossError: "change what the message names, then rerun: training resumes from its last save",
}


def run(main: Callable[[], Any]) -> None:
    """Run a workflow script's ``main``; a bad input or a machine fault ends it with exit status 1 and
    one message naming the file and what to do, in place of a traceback. Other errors keep theirs."""
    try:
        main()
    except tuple(_INPUT_REMEDIES) as err:
        remedy = next(text for cls, text in _INPUT_REMEDIES.items() if isinstance(err, cls))
        sys.exit(f"error: {err}\n{remedy}")
    except OSError as err:
        if err.errno not in _MACHINE_REMEDIES:
            raise
        sys.exit(f"error: {err.filename or err}: {err.strerror}; {_MACHINE_REMEDIES[err.errno]}")
