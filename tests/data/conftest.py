"""A tiny valid corpus in the Llama-AVSR label format, written with our own media writers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from avsr_sinks.data import media
from avsr_sinks.data.manifest import write_split

DATASET = "tiny"
# (split, speaker, frames): varied lengths so batching has something to sort; 4 train speakers for babble.
LAYOUT = {
    "train": [("spk0", 25), ("spk1", 20), ("spk2", 30), ("spk3", 25)],
    "val": [("spk4", 25), ("spk5", 22), ("spk6", 28)],
    "test": [("spk7", 25), ("spk8", 24), ("spk9", 26)],
}


def moving_square(n_frames: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W): a bright square drifting across a dark background."""
    frames = np.full((n_frames, size, size), 30, dtype=np.uint8)
    start = np.random.default_rng(seed).integers(0, size // 2)
    for t in range(n_frames):
        x = (start + 2 * t) % (size - 24)
        frames[t, 30:54, x : x + 24] = 220
    return frames


def tone(n_samples: int, freq: float = 220.0, sr: int = media.SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """float (N,): a sine plus a little noise, well inside [-1, 1]."""
    t = np.arange(n_samples) / sr
    noise = np.random.default_rng(seed).standard_normal(n_samples)
    return 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * noise


def add_utterance(root: Path, split: str, speaker: str, i: int, frames: int, seed: int) -> list:
    rel = f"{split}/{speaker}/{split}_{i:03d}.mp4"
    video = root / DATASET / rel
    media.write_video(video, moving_square(frames, seed=seed))
    media.write_audio(video.with_suffix(".wav"), tone(frames * 640, 150.0 + 40 * seed, seed=seed))
    words = ["hello", "world", "again", "now"][: 1 + i % 3]
    return [DATASET, rel, frames, [7 + i, 11, 13][: len(words)], " ".join(words).upper()]


@pytest.fixture(scope="session")
def _pristine_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "root"
    seed = 0
    for split, entries in LAYOUT.items():
        rows = []
        for i, (spk, frames) in enumerate(entries):
            rows.append(add_utterance(root, split, spk, i, frames, seed))
            seed += 1
        write_split(root, split, rows)
    return root


@pytest.fixture()
def corpus(_pristine_corpus: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny corpus that a test may damage."""
    root = tmp_path / "root"
    shutil.copytree(_pristine_corpus, root)
    return root
