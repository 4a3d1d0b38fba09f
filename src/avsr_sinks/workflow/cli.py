"""What every workflow script shares: the --params argument, logging and thread settings, and turning a
failure into a message that says what to do. (What the scripts of one experiment read: experiment_inputs.)"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avsr_sinks.data.manifest import DataError, SplitError
from avsr_sinks.data.media import MediaError
from avsr_sinks.settings.config import ConfigError, load_params
from avsr_sinks.training.nonfinite import NonFiniteLossError


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


def model_build_parser(description: str) -> argparse.ArgumentParser:
    """``parser`` plus what a script that builds a model from the corpus writes: the model folder, its
    per-step CSV log and its summary."""
    ap = parser(description)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--log-csv", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True)
    return ap


def start(args: argparse.Namespace) -> dict[str, Any]:
    """Configure logging and torch threads, then load and validate the configuration."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    # Imported here: the corpus media check and the tables page run through this module without torch.
    import torch

    torch.set_num_threads(args.threads or params["runtime"]["threads"])
    return params


def modality_path(text: str) -> tuple[str, Path]:
    """``audio=PATH`` or ``video=PATH`` (the ``--features`` arguments of the train and evaluate scripts)."""
    modality, sep, path = text.partition("=")
    if not sep or modality not in ("audio", "video") or not path:
        raise argparse.ArgumentTypeError(f"expected audio=PATH or video=PATH, got {text!r}")
    return modality, Path(path)


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
    "repair or remove what is named above, or set corpus.on_bad_sample: skip to leave bad samples out of "
    "every stage (each one is listed in results/corpus/<corpus>/<split>.skipped.csv), then rerun"
)
_INPUT_REMEDIES = {  # the first class that matches gives the remedy
    SplitError: "repair the label file or the corpus folder named above (corpus.root in the configuration "
    "says where the corpus is), then rerun",
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
