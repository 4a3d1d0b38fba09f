"""Atomic file output, hashing, provenance and the check of local model folders, shared by every stage.

Every stage writes to a temporary name in the destination folder and renames on success, so an
interrupted job never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    Works for files and folders alike: the caller creates whatever it wants at the yielded path.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"stage produced nothing at {final}")
        if final.is_dir() and not final.is_symlink():
            # A folder cannot be renamed over a non-empty one: move the old one aside first, so that a
            # kill between the two renames still leaves its content on disk.
            os.replace(final, tmp / f"{final.name}.old")
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require_model_folder(
    folder: Path, config_key: str, files: Sequence[str], hub_id: str | None, otherwise: str
) -> None:
    """Refuse a pretrained-model folder without config.json, saying what belongs there and where.

    Nothing is ever downloaded, so this message is all a user gets when a model is missing.

    Args:
        folder: where the model is expected.
        config_key: the configuration key that sets ``folder``, e.g. ``audio_encoder.path``.
        files: what a Hugging Face folder of the model holds, listed in the message.
        hub_id: the Hugging Face model expected there (e.g. ``openai/whisper-medium.en``), or None.
        otherwise: how to provide the folder when ``hub_id`` is None (e.g. the rule that builds it).
    """
    if (folder / "config.json").is_file():
        return
    problem = "has no config.json" if folder.is_dir() else "does not exist"
    remedy = (
        f"put the Hugging Face folder of {hub_id} there ({', '.join(files)}) or set {config_key}"
        if hub_id
        else otherwise
    )
    raise FileNotFoundError(f"{config_key}: {folder} {problem}: {remedy}")


def load_safetensors(path: str | os.PathLike[str], restore: str) -> dict[str, Any]:
    """The tensors of a safetensors file; a truncated or corrupt one raises a ValueError that names the
    file and says how to ``restore`` it (safetensors' own error names neither)."""
    # Imported here: safetensors.torch imports torch, which the figure and table jobs (users of the
    # other helpers of this module) never need; it is seconds of every such job's start.
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise ValueError(
            f"{path}: not a readable safetensors file ({err}); it is truncated or corrupt: {restore}"
        ) from err


def git_commit() -> str:
    """The commit of the working tree the code runs from, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def load_state_exactly(
    module: Any, state: dict[str, Any], source: str | os.PathLike[str], what: str, remedy: str = ""
) -> None:
    """Load ``state`` into the torch ``module`` only if it holds exactly the module's tensor names and
    shapes; otherwise raise a ValueError naming ``source``, ``what`` it should be, every missing,
    unexpected and misshapen key (a strict ``load_state_dict`` alone stops at the first shape), and the
    ``remedy`` when one is given."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = {
        k: (tuple(state[k].shape), tuple(expected[k].shape))
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    }
    if missing or unexpected or misshapen:
        raise ValueError(
            f"{source}: does not match {what}: missing keys {missing}, unexpected keys {unexpected}, "
            f"shape mismatches (given, expected) {misshapen}" + (f"; {remedy}" if remedy else "")
        )
    module.load_state_dict(state, strict=True)
