"""Train-time augmentation on cached encoder outputs: a noisy view of the audio, and time masking.

The paper's recipe (auto_avsr's transforms, used by Llama-AVSR) mixes babble noise into the training
audio and masks spans of time in both inputs. The encoders here are frozen and their outputs cached, so
the noise comes from a second cache of the training split, made once with noise mixed in at an SNR drawn
per utterance, and each sample reads that view with some probability in each epoch; the masks zero spans
of the encoder outputs rather than of the raw input (a masked span then does not spread through the
encoder's self-attention).

Every draw depends only on the seed, the epoch and the utterance, so a resumed run and a run over any
number of processes see the same augmented samples.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avsr_sinks.features.store import FeatureStore


@dataclass(frozen=True)
class AugmentConfig:
    noise_probability: float  # share of samples that read the noisy audio view in an epoch (0: never)
    time_mask_max_seconds: float  # per second of input, one zeroed span of up to this length (0: none)


def sample_rng(seed: int, epoch: int, uid: str) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, zlib.crc32(uid.encode("utf-8"))])


def time_mask(
    features: torch.Tensor, frame_rate: float, max_seconds: float, rng: np.random.Generator
) -> torch.Tensor:
    """A copy of ``features`` (T, D) with one span of 0 to ``max_seconds`` zeroed per whole second of
    input, as auto_avsr's adaptive time mask does on the raw signal."""
    frames = features.shape[0]
    max_len = int(round(max_seconds * frame_rate))
    n_masks = int(frames // frame_rate)
    if max_len == 0 or n_masks == 0:
        return features
    masked = features.clone()
    for _ in range(n_masks):
        length = int(rng.integers(0, min(max_len, frames) + 1))
        start = int(rng.integers(0, frames - length + 1))
        masked[start : start + length] = 0
    return masked


class FeatureAugmenter:
    """Applies the augmentation of one training run to batches of cached features."""

    def __init__(
        self,
        cfg: AugmentConfig,
        seed: int,
        frame_rates: Mapping[str, float],
        noisy_stores: Mapping[str, FeatureStore] | None = None,
    ) -> None:
        self.noisy_stores = dict(noisy_stores or {})
        if cfg.noise_probability > 0 and not self.noisy_stores:
            raise ValueError(
                f"train.augment.noise.probability = {cfg.noise_probability} reads a noisy view of the "
                "training audio, but no noisy feature cache was given (workflow_scripts/train.py "
                "--noisy-features audio=PATH)"
            )
        self.cfg, self.seed, self.frame_rates = cfg, seed, dict(frame_rates)

    def check_covers(self, uids: Sequence[str]) -> None:
        """Refuse a noisy cache that lacks some training utterance before any step is taken."""
        for modality, store in self.noisy_stores.items():
            absent = [uid for uid in uids if uid not in store.index]
            if absent:
                raise ValueError(
                    f"{store.folder}: no noisy {modality} features for {len(absent)} training "
                    f"utterance(s), e.g. {absent[0]}; rebuild the cache"
                )

    def __call__(
        self, uids: Sequence[str], features: Sequence[Mapping[str, torch.Tensor]], epoch: int
    ) -> list[dict[str, torch.Tensor]]:
        out = []
        for uid, sample in zip(uids, features, strict=True):
            rng = sample_rng(self.seed, epoch, uid)
            noisy = rng.random() < self.cfg.noise_probability
            augmented = {}
            for modality, feats in sample.items():
                if noisy and modality in self.noisy_stores:
                    feats = self.noisy_stores[modality][uid]
                if self.cfg.time_mask_max_seconds > 0:
                    feats = time_mask(feats, self.frame_rates[modality], self.cfg.time_mask_max_seconds, rng)
                augmented[modality] = feats
            out.append(augmented)
        return out
