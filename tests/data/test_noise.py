"""Noise mixing at an exact SNR, babble from training speakers, the fixed noise bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsr_sinks.data import noise
from avsr_sinks.data.manifest import read_split


def realised_snr(speech: np.ndarray, mixed: np.ndarray) -> float:
    s = speech.astype(np.float64)
    added = mixed.astype(np.float64) - s
    return 10 * np.log10(np.mean(s**2) / np.mean(added**2))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0])
@pytest.mark.parametrize("noise_len", [3000, 16000, 50000])
def test_mix_hits_snr(snr_db: float, noise_len: int) -> None:
    rng = np.random.default_rng(1)
    speech = rng.standard_normal(16000).astype(np.float32) * 0.1
    n = rng.uniform(-1, 1, noise_len).astype(np.float32)
    mixed = noise.mix_at_snr(speech, n, snr_db, np.random.default_rng(2))
    assert mixed.shape == speech.shape and mixed.dtype == np.float32
    assert abs(realised_snr(speech, mixed) - snr_db) < 0.01


def test_mix_is_seeded_and_refuses_silence() -> None:
    speech, n = np.ones(100), np.arange(37.0)
    a = noise.mix_at_snr(speech, n, 5, np.random.default_rng(3))
    b = noise.mix_at_snr(speech, n, 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="noise window is silent"):
        noise.mix_at_snr(speech, np.zeros(50), 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="speech is silent"):
        noise.mix_at_snr(np.zeros(50), n, 0, np.random.default_rng(0))


def test_white_noise() -> None:
    w = noise.white_noise(8000, np.random.default_rng(0))
    assert w.shape == (8000,) and abs(w.std() - 1) < 0.05


def test_babble_mixes_distinct_training_speakers(corpus: Path) -> None:
    utts = read_split(corpus, "train")
    loaded: list[Path] = []

    def spy(path: Path) -> np.ndarray:
        loaded.append(path)
        return noise.media.read_audio(path)

    track = noise.babble_noise(utts, 3, 24000, np.random.default_rng(0), loader=spy)
    assert track.shape == (24000,) and abs(np.sqrt(np.mean(track.astype(np.float64) ** 2)) - 1) < 1e-3
    speakers = {p.parent.name for p in loaded}
    assert len(loaded) == 3 and len(speakers) == 3
    with pytest.raises(ValueError, match="5 different speakers .* hold 4"):
        noise.babble_noise(utts, 5, 100, np.random.default_rng(0))


def test_noise_bank_is_fixed_per_seed(corpus: Path, tmp_path: Path) -> None:
    utts = read_split(corpus, "train")
    a = noise.NoiseBank(utts, n_speakers=2, seconds=1.0, seed=4)
    b = noise.NoiseBank(utts, n_speakers=2, seconds=1.0, seed=4)
    c = noise.NoiseBank(utts, n_speakers=2, seconds=1.0, seed=5)
    np.testing.assert_array_equal(a.tracks["babble"], b.tracks["babble"])
    assert not np.array_equal(a.tracks["babble"], c.tracks["babble"])
    speech = np.random.default_rng(0).standard_normal(4000)
    mixed = a.mix(speech, 10.0, np.random.default_rng(0))
    assert abs(realised_snr(speech, mixed) - 10.0) < 0.01
    a.save(tmp_path / "bank")
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["babble.wav", "white.wav"]
    with pytest.raises(ValueError, match="no 'babble' noise"):
        noise.NoiseBank(seconds=0.1).mix(speech, 0, np.random.default_rng(0))


def test_conditions_name_their_noise() -> None:
    assert noise.parse_condition("clean") is None
    assert noise.parse_condition("babble-5db") == ("babble", (-5.0,))
    assert noise.parse_condition("white10db") == ("white", (10.0,))
    assert noise.parse_condition("babble-5_0_20db") == ("babble", (-5.0, 0.0, 20.0))
    assert noise.noise_condition("babble", [-5, 0, 20]) == "babble-5_0_20db"
    with pytest.raises(ValueError, match="unknown condition 'pink0db'"):
        noise.parse_condition("pink0db")


def test_utterance_rng_depends_on_seed_and_uid_only() -> None:
    a = noise.utterance_rng(0, "synth/test/spk00/u1").random(3)
    assert np.array_equal(a, noise.utterance_rng(0, "synth/test/spk00/u1").random(3))
    assert not np.array_equal(a, noise.utterance_rng(0, "synth/test/spk00/u2").random(3))
    assert not np.array_equal(a, noise.utterance_rng(1, "synth/test/spk00/u1").random(3))
