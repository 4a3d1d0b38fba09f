"""What every workflow script shares: the --params argument, logging and thread settings."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from avsr_sinks.config import load_params


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
