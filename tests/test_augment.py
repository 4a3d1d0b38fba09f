"""Train-time augmentation on cached features: the noisy audio view and time masking."""

import numpy as np
import pytest
import torch

from avsr_sinks.features.augment import AugmentConfig, FeatureAugmenter, time_mask

RATES = {"audio": 50.0, "video": 25.0}


class Store(dict):
    folder = "noisy-cache"

    @property
    def index(self):
        return self


def batch(uids, frames=100):
    return [{"audio": torch.ones(frames, 4), "video": torch.ones(frames // 2, 3)} for _ in uids]


def test_time_mask_zeroes_one_bounded_span_per_second() -> None:
    feats = torch.ones(250, 2)  # 5 s at 50 frames/s
    masked = time_mask(feats, 50.0, 0.4, np.random.default_rng(0))
    zero_rows = (masked == 0).all(dim=1)
    assert feats.eq(1).all(), "the input must not change"
    assert 0 < int(zero_rows.sum()) <= 5 * 20
    # under a second of input: nothing is masked
    assert time_mask(torch.ones(40, 2), 50.0, 0.4, np.random.default_rng(0)).eq(1).all()


def test_noisy_view_replaces_audio_only_and_depends_on_seed_epoch_uid() -> None:
    uids = [f"u{i}" for i in range(200)]
    store = Store({uid: torch.full((100, 4), 7.0) for uid in uids})
    augment = FeatureAugmenter(
        AugmentConfig(0.5, 0.0), seed=0, frame_rates=RATES, noisy_stores={"audio": store}
    )
    out = augment(uids, batch(uids), epoch=0)
    noisy = [bool(sample["audio"].eq(7).all()) for sample in out]
    assert 70 < sum(noisy) < 130, "about half the samples read the noisy view"
    assert all(sample["video"].eq(1).all() for sample in out)
    again = augment(uids, batch(uids), epoch=0)
    assert [bool(s["audio"].eq(7).all()) for s in again] == noisy
    # the same utterance alone in a batch gets the same draw: independent of batching
    assert bool(augment(uids[3:4], batch(uids[3:4]), epoch=0)[0]["audio"].eq(7).all()) == noisy[3]
    other_epoch = [bool(s["audio"].eq(7).all()) for s in augment(uids, batch(uids), epoch=1)]
    assert other_epoch != noisy


def test_masking_is_reproducible_and_covers_each_modality() -> None:
    uids = ["a", "b"]
    augment = FeatureAugmenter(AugmentConfig(0.0, 0.4), seed=1, frame_rates=RATES)
    first = augment(uids, batch(uids, frames=300), epoch=2)
    second = augment(uids, batch(uids, frames=300), epoch=2)
    for x, y in zip(first, second, strict=True):
        for modality in ("audio", "video"):
            assert torch.equal(x[modality], y[modality])
            assert x[modality].eq(0).all(dim=1).any(), f"{modality}: some frames are masked"


def test_noise_without_a_noisy_cache_is_refused() -> None:
    with pytest.raises(ValueError, match="noise.probability = 0.5 .* --noisy-features"):
        FeatureAugmenter(AugmentConfig(0.5, 0.0), seed=0, frame_rates=RATES)


def test_a_noisy_cache_missing_an_utterance_is_named() -> None:
    store = Store({"a": torch.zeros(3, 4)})
    augment = FeatureAugmenter(
        AugmentConfig(1.0, 0.0), seed=0, frame_rates=RATES, noisy_stores={"audio": store}
    )
    with pytest.raises(
        ValueError, match="noisy-cache: no noisy audio features for 1 training utterance.*e.g. b"
    ):
        augment.check_covers(["a", "b"])


def test_time_mask_may_differ_per_task(tmp_path) -> None:
    from avsr_sinks.settings.config import ConfigError, load_params
    from avsr_sinks.settings.grid import parse_name
    from avsr_sinks.settings.spec import resolve_run
    from avsr_sinks.training.from_spec import augment_config
    from tests.conftest import REPO

    overlay = tmp_path / "mask.yaml"
    overlay.write_text("train:\n  augment:\n    time_mask_max_seconds: {asr: 0.2, vsr: 0.0, avsr: 0.3}\n")
    params = load_params([REPO / "params.yaml", overlay])
    experiments = [
        parse_name(n) for n in ("asr-a4-baseline-s0", "vsr-v5-baseline-s0", "avsr-a4v5-baseline-s0")
    ]
    assert [augment_config(resolve_run(params, e)).time_mask_max_seconds for e in experiments] == [
        0.2,
        0.0,
        0.3,
    ]
    overlay.write_text("train:\n  augment:\n    time_mask_max_seconds: 0.4\n")
    params = load_params([REPO / "params.yaml", overlay])
    assert {augment_config(resolve_run(params, e)).time_mask_max_seconds for e in experiments} == {0.4}
    overlay.write_text("train:\n  augment:\n    time_mask_max_seconds: {asr: 0.2, avr: 0.2}\n")  # a typo
    with pytest.raises(ConfigError, match="time_mask_max_seconds"):
        load_params([REPO / "params.yaml", overlay])
