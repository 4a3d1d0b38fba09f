"""What every workflow script shares: the --params argument, logging and thread settings."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from avsr_sinks.config import load_params
from avsr_sinks.features import FeatureStore


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
