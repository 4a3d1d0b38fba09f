"""The feature cache: frozen encoder outputs computed once per corpus x encoder x split x condition.

Layout of one cache folder::

    shard-00000.safetensors   one tensor per utterance, named by its position in index.json
    index.json                {uid: [shard, key, frames]}
    manifest.json             encoder identity (name, weights hash, window), corpus, split, condition,
                              and the SHA-256 of every shard

A cache whose manifest names another encoder than the one requested is stale and refused; a shard whose
hash differs from the manifest's (changed or damaged on disk) is refused before it is read.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from avsr_sinks.io import atomic_path, load_safetensors, sha256_file

log = logging.getLogger(__name__)

SHARD_SIZE = 512
VIDEO_FPS = 25


class StaleCacheError(RuntimeError):
    """A feature cache was made by another encoder than the one the experiment asks for."""


def extract_features(
    uids: Sequence[str],
    load_input: Callable[[str], np.ndarray],
    encode: Callable[[list[np.ndarray]], list[torch.Tensor]],
    out_dir: Path,
    manifest: Mapping[str, Any],
    batch_size: int,
) -> None:
    """Encode every utterance and write the cache folder atomically.

    Args:
        uids: utterance ids in a stable order.
        load_input: reads one utterance's encoder input (a waveform or frames) by uid.
        encode: the frozen encoder on a list of inputs, returning one (T_i, D) tensor each.
        out_dir: the cache folder to create.
        manifest: provenance written to manifest.json (must hold the encoder identity).
        batch_size: utterances per encoder call.
    """
    index: dict[str, list[Any]] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        shard: dict[str, torch.Tensor] = {}
        shard_id = 0
        for start in tqdm(range(0, len(uids), batch_size), desc=f"features {out_dir.name}", mininterval=5):
            chunk = uids[start : start + batch_size]
            outputs = encode([load_input(uid) for uid in chunk])
            for uid, feats in zip(chunk, outputs, strict=True):
                key = f"u{len(index):06d}"
                # float16 halves the cache; the frozen encoders' own weights carry no more precision.
                shard[key] = feats.detach().to(torch.float16).contiguous()
                index[uid] = [shard_id, key, int(feats.shape[0])]
                if len(shard) == SHARD_SIZE:
                    save_file(shard, str(tmp / f"shard-{shard_id:05d}.safetensors"))
                    shard, shard_id = {}, shard_id + 1
        if shard:
            save_file(shard, str(tmp / f"shard-{shard_id:05d}.safetensors"))
        (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
        shard_hashes = {p.name: sha256_file(p) for p in sorted(tmp.glob("shard-*.safetensors"))}
        (tmp / "manifest.json").write_text(
            json.dumps({**manifest, "shard_sha256": shard_hashes}, indent=2, sort_keys=True), encoding="utf-8"
        )


class FeatureStore:
    """Read access to one cache folder, held in memory as float32."""

    def __init__(self, folder: Path, expected_encoder: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        for name in ("index.json", "manifest.json"):
            if not (self.folder / name).is_file():
                raise FileNotFoundError(
                    f"{self.folder}: not a feature cache ({name} missing); rerun the "
                    "features rule to rebuild it"
                )
        self.manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        if expected_encoder is not None and self.manifest.get("encoder") != dict(expected_encoder):
            raise StaleCacheError(
                f"{self.folder}: cache was made by encoder {self.manifest.get('encoder')}, but "
                f"{dict(expected_encoder)} is requested; delete the folder and rerun the features rule"
            )
        self.index: dict[str, list[Any]] = json.loads(
            (self.folder / "index.json").read_text(encoding="utf-8")
        )
        restore = (
            f"restore it with `dvc checkout {self.folder}` where DVC tracks the cache, or delete "
            f"{self.folder} and rerun the features rule"
        )
        self._tensors: dict[tuple[int, str], torch.Tensor] = {}
        for name, expected in self.manifest.get("shard_sha256", {}).items():
            shard = self.folder / name
            if not shard.is_file() or sha256_file(shard) != expected:
                problem = "is missing" if not shard.is_file() else "differs from its SHA-256 in manifest.json"
                raise ValueError(f"{shard}: {problem}; the cache was changed or damaged on disk: {restore}")
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            shard_id = int(shard.stem.split("-")[1])
            for key, tensor in load_safetensors(shard, restore).items():
                self._tensors[(shard_id, key)] = tensor.float()
        for uid, (shard_id, key, frames) in self.index.items():
            tensor = self._tensors.get((shard_id, key))
            if tensor is None or tensor.shape[0] != frames:
                raise ValueError(f"{self.folder}: cache entry for {uid} is missing or truncated; rebuild it")

    @property
    def uids(self) -> list[str]:
        return list(self.index)

    def frames(self, uid: str) -> int:
        return int(self.index[uid][2])

    def __getitem__(self, uid: str) -> torch.Tensor:
        shard_id, key, _ = self.index[uid]
        return self._tensors[(shard_id, key)]


class FeatureDataset(torch.utils.data.Dataset):
    """Utterances as (uid, {modality: (T, D) features}, transcript) from one cache per modality."""

    def __init__(self, stores: Mapping[str, FeatureStore], transcripts: Mapping[str, str]) -> None:
        self.stores = dict(stores)
        first = next(iter(self.stores.values()))
        self.uids = [uid for uid in first.uids if uid in transcripts]
        for modality, store in self.stores.items():
            absent = [uid for uid in self.uids if uid not in store.index]
            if absent:
                raise ValueError(
                    f"{store.folder}: no {modality} features for {len(absent)} utterance(s), "
                    f"e.g. {absent[0]}; rebuild the cache"
                )
        self.transcripts = {uid: transcripts[uid] for uid in self.uids}

    def __len__(self) -> int:
        return len(self.uids)

    def frame_lengths(self) -> list[int]:
        """Per-utterance length in video frames at 25 fps, the unit of Llama-AVSR's batch budget."""
        store = next(iter(self.stores.values()))
        rate = store.manifest["frame_rate"]
        return [math.ceil(store.frames(uid) * VIDEO_FPS / rate) for uid in self.uids]

    def __getitem__(self, i: int) -> tuple[str, dict[str, torch.Tensor], str]:
        uid = self.uids[i]
        return uid, {m: store[uid] for m, store in self.stores.items()}, self.transcripts[uid]


def collate_features(items: Sequence[tuple[str, dict[str, torch.Tensor], str]]) -> dict[str, list]:
    """Keep samples unpadded: the model compresses each on its own frames and pads after projection."""
    return {
        "uids": [i[0] for i in items],
        "features": [i[1] for i in items],
        "transcripts": [i[2] for i in items],
    }
