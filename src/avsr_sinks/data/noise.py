"""Additive noise at an exact SNR: white noise and babble built from the corpus's own training speech.

All signals are float ``(N,)`` mono 16 kHz arrays. Randomness comes only from the ``numpy.random.Generator``
passed in. Mixed output is not clipped: clipping would change the realised SNR (the layer norm that
follows in the audio transform rescales the waveform anyway).
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from avsr_sinks.data import media
from avsr_sinks.data.manifest import Utterance

log = logging.getLogger(__name__)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def fit_length(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A ``length``-sample window of ``noise`` starting at a random offset, looping it when too short."""
    noise = np.asarray(noise, dtype=np.float64).reshape(-1)
    if noise.size == 0:
        raise ValueError("noise signal is empty")
    offset = int(rng.integers(0, noise.size))
    reps = -(-(offset + length) // noise.size)  # ceil division: enough copies to cover the window
    return np.tile(noise, reps)[offset : offset + length]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``speech + g * noise_window`` with g chosen so ``10*log10(P_speech / P_added) == snr_db``.

    ``speech``: float ``(N,)``; ``noise``: float ``(M,)`` of any length (cut or looped to N at a random
    offset). Returns float32 ``(N,)``. Raises ``ValueError`` for silent speech or noise, where no gain
    can reach the SNR.
    """
    s = np.asarray(speech, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("speech signal is empty")
    n = fit_length(noise, s.size, rng)
    p_s, p_n = _power(s), _power(n)
    if p_s == 0.0 or p_n == 0.0:
        which = "speech" if p_s == 0.0 else "noise window"
        raise ValueError(f"{which} is silent (zero power); cannot mix at {snr_db} dB SNR")
    gain = np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return (s + gain * n).astype(np.float32)


def white_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise, float32 ``(length,)``, unit variance (the mix rescales it)."""
    return rng.standard_normal(length).astype(np.float32)


def speaker_of(utt: Utterance) -> str:
    """Speaker key: the folder holding the clip (LRS3 ``trainval/<video id>/``, synth ``<split>/<spk>/``)."""
    return f"{utt.dataset}/{PurePosixPath(utt.relative_path).parent}"


def babble_noise(
    utterances: Sequence[Utterance],
    n_speakers: int,
    length: int,
    rng: np.random.Generator,
    loader: Callable[[Path], np.ndarray] = media.read_audio,
) -> np.ndarray:
    """Sum ``n_speakers`` utterances from different speakers, each cut/looped to ``length`` and set to
    unit RMS, then scaled back to unit RMS overall. Returns float32 ``(length,)``.

    Use training utterances only, so no test speaker leaks into the noise. Silent clips are passed over.
    """
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in utterances:
        by_speaker.setdefault(speaker_of(utt), []).append(utt)
    if len(by_speaker) < n_speakers:
        raise ValueError(
            f"babble needs {n_speakers} different speakers but the utterances hold {len(by_speaker)}; "
            "lower n_speakers or pass more training utterances"
        )
    speakers = sorted(by_speaker)
    mix = np.zeros(length, dtype=np.float64)
    used = 0
    for k in rng.permutation(len(speakers)):
        if used == n_speakers:
            break
        candidates = by_speaker[speakers[k]]
        utt = candidates[int(rng.integers(len(candidates)))]
        track = fit_length(loader(utt.audio_path), length, rng)
        power = _power(track)
        if power == 0.0:
            log.warning("babble: %s is silent in the chosen window, trying another speaker", utt.uid)
            continue
        mix += track / np.sqrt(power)
        used += 1
    if used < n_speakers:
        raise ValueError(f"babble: only {used} of {n_speakers} speakers had non-silent audio")
    return (mix / np.sqrt(_power(mix))).astype(np.float32)


class NoiseBank:
    """Fixed noise tracks built once per seed: ``babble`` from training speech and ``white``.

    ``mix(speech, snr_db, rng, kind)`` draws a random window of the chosen track.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance] = (),
        n_speakers: int = 8,
        seconds: float = 60.0,
        seed: int = 0,
        sample_rate: int = media.SAMPLE_RATE,
        loader: Callable[[Path], np.ndarray] = media.read_audio,
    ) -> None:
        length = int(round(seconds * sample_rate))
        rng = np.random.default_rng([seed, 0xB0BB1E])
        self.tracks: dict[str, np.ndarray] = {"white": white_noise(length, rng)}
        if utterances:
            self.tracks["babble"] = babble_noise(utterances, n_speakers, length, rng, loader)
        self.seed, self.n_speakers, self.sample_rate = seed, n_speakers, sample_rate
        log.info("noise bank: %s, %.1f s each, seed %d", sorted(self.tracks), seconds, seed)

    def mix(
        self, speech: np.ndarray, snr_db: float, rng: np.random.Generator, kind: str = "babble"
    ) -> np.ndarray:
        if kind not in self.tracks:
            raise ValueError(f"no {kind!r} noise in this bank (have {sorted(self.tracks)}); pass utterances")
        return mix_at_snr(speech, self.tracks[kind], snr_db, rng)

    def save(self, folder: Path) -> None:
        """Write each track as ``<folder>/<kind>.wav`` (16-bit, peak-normalised) atomically."""
        for kind, track in self.tracks.items():
            peak = max(1e-9, float(np.abs(track).max()))
            media.write_audio(Path(folder) / f"{kind}.wav", track / peak, self.sample_rate)


TEXT_ONLY = "text_only"  # the evaluation condition that drops every modality (the LLM's text-only floor)
_CONDITION = re.compile(r"^(?P<kind>babble|white)(?P<snrs>-?\d+(?:_-?\d+)*)db$")


def parse_condition(condition: str) -> tuple[str, tuple[float, ...]] | None:
    """A condition's noise: None for ``clean``; ``(kind, snrs_db)`` for e.g. ``babble-5db`` (one SNR) or
    ``babble-5_0_5db`` (each utterance at one SNR of the list, drawn by ``utterance_snr``)."""
    if condition == "clean":
        return None
    match = _CONDITION.match(condition)
    if not match:
        raise ValueError(
            f"unknown condition {condition!r}: expected clean, or babble/white followed by an SNR in dB "
            "(e.g. babble0db, white-5db) or by several joined with _ (babble-5_0_5db)"
        )
    return match["kind"], tuple(float(snr) for snr in match["snrs"].split("_"))


def noise_condition(kind: str, snrs_db: Sequence[float]) -> str:
    """The name of noise ``kind`` at one of ``snrs_db`` per utterance (parse_condition inverts it)."""
    return f"{kind}{'_'.join(f'{snr:g}' for snr in snrs_db)}db"


def utterance_rng(seed: int, uid: str) -> np.random.Generator:
    """A generator that depends only on the seed and the utterance, so a mix never depends on the order
    or the batch in which utterances are processed."""
    return np.random.default_rng([seed, zlib.crc32(uid.encode("utf-8"))])


def mix_condition(
    bank: NoiseBank, speech: np.ndarray, kind: str, snrs_db: Sequence[float], uid: str, seed: int = 0
) -> np.ndarray:
    """``speech`` of utterance ``uid`` under noise ``kind`` at an SNR of ``snrs_db`` chosen for that utterance
    (the only one when the list holds one), the same whatever the order of processing."""
    rng = utterance_rng(seed, uid)
    snr = snrs_db[0] if len(snrs_db) == 1 else float(rng.choice(snrs_db))
    return bank.mix(speech, snr, rng, kind)
