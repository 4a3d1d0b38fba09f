"""eSpeak NG speech synthesis through ctypes, with word and phoneme timings, at 16 kHz mono.

libespeak-ng keeps global state that espeak_Initialize does not reset (e.g. the pitch-flutter
phase and the automatic gain in wavegen.c), so the same text would come out slightly different
depending on what the process spoke before. For output that depends only on (text, speaker),
every utterance loads the library afresh, initialises it, speaks and unloads it again (dlclose);
this costs a few milliseconds.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import av
import espeakng_loader
import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
LEAD_S = 0.12  # silence kept before the first phoneme and after the last, identical for every utterance
TAIL_S = 0.12

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_EV_LIST_TERMINATED, _EV_WORD, _EV_END, _EV_PHONEME = 0, 1, 5, 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE, _P_WORDGAP = 1, 2, 3, 4, 7

_MALE = [f"m{i}" for i in range(1, 8)]
# Variants with a "breath" setting (f2, f3, f5) draw libc rand() noise whose output was not reproducible
# across processes, so only breath-free female variants are used. f1 and belinda are left out too: on
# them Whisper tiny.en falls into repetition loops (CER 67% and 125% on the default test split, against
# 11-20% for the other voices), which would make the zero-shot intelligibility check measure Whisper.
_FEMALE = ["steph", "f4", "aunty"]


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Speaker:
    """A fixed synthetic speaker: eSpeak voice and prosody plus a numpy timbre change."""

    speaker_id: str
    voice: str  # eSpeak "language+variant"
    pitch: int  # espeakPITCH 0..100
    pitch_range: int  # espeakRANGE 0..100
    rate: int  # words per minute
    formant_shift: float  # >1 raises pitch and formants (and shortens by the same factor)
    tilt: float  # first-order FIR coefficient: >0 darker, <0 brighter


@dataclass
class Utterance:
    """Synthesised audio and the engine's timings, already shifted to the trimmed 16 kHz signal."""

    audio: np.ndarray  # int16, 16 kHz mono
    words: list[tuple[str, float, float]] = field(default_factory=list)
    phonemes: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def make_speakers(seed: int, n: int) -> list[Speaker]:
    """``n`` distinct speakers derived from ``seed``; voice variants cycle so male and female alternate."""
    variants = [v for pair in zip(_MALE, _FEMALE + _FEMALE, strict=False) for v in pair] + _MALE[4:]
    speakers = []
    for k in range(n):
        rng = np.random.default_rng([seed, 7919, k])
        lang = "en-us" if k % 3 != 2 else "en"
        speakers.append(
            Speaker(
                speaker_id=f"spk{k:02d}",
                voice=f"{lang}+{variants[k % len(variants)]}",
                pitch=int(rng.integers(35, 66)),
                pitch_range=int(rng.integers(45, 86)),
                rate=int(rng.integers(140, 176)),
                formant_shift=round(float(rng.uniform(0.95, 1.05)), 3),
                tilt=round(float(rng.uniform(-0.35, 0.45)), 3),
            )
        )
    return speakers


class _Engine:
    """The per-process eSpeak handle and the buffers its callback fills."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        opts = _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, opts)
        if self.rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.rate})")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int, str]] = []  # (type, sample, text_position, phoneme)
        self._cb = _Callback(self._collect)  # keep a reference or ctypes frees the trampoline
        self.lib.espeak_SetSynthCallback(self._cb)

    def close(self) -> None:
        """Terminate eSpeak and unload the library so that its static state is discarded."""
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n: int, ev: ctypes.POINTER(_Event)) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while ev[i].type != _EV_LIST_TERMINATED:
            e = ev[i]
            name = e.id.string.decode("ascii", "replace") if e.type == _EV_PHONEME else ""
            self.events.append((e.type, e.sample, e.text_position, name))
            i += 1
        return 0

    def run(self, text: str, speaker: Speaker) -> tuple[np.ndarray, list[tuple[int, int, int, str]]]:
        if self.lib.espeak_SetVoiceByName(speaker.voice.encode()) != 0:
            raise RuntimeError(f"eSpeak has no voice {speaker.voice!r}")
        for param, value in (
            (_P_RATE, speaker.rate), (_P_PITCH, speaker.pitch), (_P_RANGE, speaker.pitch_range),
            (_P_VOLUME, 100), (_P_WORDGAP, 0),
        ):  # fmt: skip
            self.lib.espeak_SetParameter(param, value, 0)
        self.chunks, self.events = [], []
        raw = text.encode("utf-8")
        err = self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r}")
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio, self.events


@contextlib.contextmanager
def _engine() -> Iterator[_Engine]:
    engine = _Engine()
    try:
        yield engine
    finally:
        engine.close()


def init_engine() -> None:
    """Check that eSpeak loads and initialises in this process (used as the pool initialiser)."""
    with _engine() as engine:
        log.debug("eSpeak %s loads in pid %d at %d Hz", espeak_version(), os.getpid(), engine.rate)


def espeak_version() -> str:
    """The libespeak-ng version string (no initialisation needed)."""
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        return lib.espeak_Info(None).decode()
    finally:
        _ctypes.dlclose(lib._handle)


def _resample(x: np.ndarray, in_rate: int) -> np.ndarray:
    """int16 mono at ``in_rate`` -> int16 at 16 kHz with libswresample (a fresh resampler each call)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(x[None, :], format="s16", layout="mono")
    frame.sample_rate = in_rate
    out = [f.to_ndarray()[0] for f in resampler.resample(frame)]
    out += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def _timbre(x: np.ndarray, tilt: float) -> np.ndarray:
    """Spectral tilt with a 2-tap FIR, then RMS normalisation to -20 dBFS with a peak guard."""
    y = x.astype(np.float64)
    y[1:] += tilt * y[:-1]
    rms = np.sqrt(np.mean(y**2)) + 1e-9
    y *= min(0.1 * 32767 / rms, 0.95 * 32767 / (np.abs(y).max() + 1e-9))
    return np.round(y).astype(np.int16)


def synthesize(text: str, speaker: Speaker) -> Utterance:
    """Speak ``text`` with ``speaker``; return 16 kHz audio and word/phoneme timings in seconds.

    The signal is cut from the first phoneme onset to the end of voiced output and padded with
    exactly LEAD_S / TAIL_S of silence, and all timings are shifted by the same amount.
    """
    with _engine() as engine:
        raw, events = engine.run(text, speaker)
        rate = engine.rate
    src_rate = round(rate * speaker.formant_shift)  # declaring a faster rate shifts formants
    # Phoneme intervals end where the next phoneme (or pause, or END) starts.
    marks = [(s, pos, name) for typ, s, pos, name in events if typ in (_EV_PHONEME, _EV_END)]
    phones: list[tuple[str, int, int, int]] = []  # symbol, start, end (22 kHz samples), text pos
    for (s, pos, name), (s_next, _, _) in zip(marks, marks[1:], strict=False):
        sym = name.strip("',")
        if sym and not sym.startswith("_") and s_next > s:
            phones.append((sym, s, s_next, pos))
    if not phones:
        raise RuntimeError(f"eSpeak produced no phonemes for {text!r}")
    start = phones[0][1]
    loud = np.flatnonzero(np.abs(raw[phones[-1][2] :].astype(np.int32)) > 300)
    stop = phones[-1][2] + (int(loud[-1]) + 1 if loud.size else 0)
    speech = _resample(_timbre(raw[start:stop], speaker.tilt), src_rate)
    lead, tail = int(LEAD_S * SAMPLE_RATE), int(TAIL_S * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead, np.int16), speech, np.zeros(tail, np.int16)])
    duration = len(audio) / SAMPLE_RATE

    def sec(sample: int) -> float:
        return round(min(LEAD_S + (sample - start) / src_rate, duration), 5)

    phonemes = [(sym, sec(a), sec(b)) for sym, a, b, _ in phones]
    # Words own the phonemes whose text position falls inside them (1-based character offsets).
    tokens = text.split()
    owned: list[list[int]] = []
    offset = 0
    for w in tokens:
        begin = text.index(w, offset) + 1
        offset = begin - 1 + len(w)
        owned.append([k for k, p in enumerate(phones) if begin <= p[3] <= offset])
    _split_merged(tokens, owned)
    words = []
    for i, (w, own) in enumerate(zip(tokens, owned, strict=True)):
        if own:
            words.append((w, phonemes[own[0]][1], phonemes[own[-1]][2]))
        else:  # nothing to split from: a zero-length slot at the next onset keeps times monotone
            nxt = next((o[0] for o in owned[i + 1 :] if o), None)
            t = phonemes[nxt][1] if nxt is not None else phonemes[-1][2]
            words.append((w, t, t))
    return Utterance(audio=audio, words=words, phonemes=phonemes)


def _split_merged(tokens: list[str], owned: list[list[int]]) -> None:
    """Share phonemes between words eSpeak spoke as one unit ("that the"), in proportion to letters.

    The engine reports such a group under the first word's text position only, so without this the
    following words would get no time at all.
    """
    i = 0
    while i < len(tokens):
        j = i + 1
        while j < len(tokens) and not owned[j]:
            j += 1
        group = list(range(i, j))
        phones = owned[i]
        if len(group) > 1 and len(phones) >= len(group):
            letters = np.cumsum([len(tokens[g]) for g in group], dtype=float)
            cuts = np.round(letters / letters[-1] * len(phones)).astype(int)
            cuts = np.maximum(cuts, np.arange(1, len(group) + 1))  # at least one phoneme per word
            cuts = np.minimum(cuts, len(phones) - np.arange(len(group) - 1, -1, -1))
            lo = 0
            for g, hi in zip(group, cuts, strict=True):
                owned[g] = phones[lo:hi]
                lo = hi
        i = j


def speaker_table(speakers: list[Speaker]) -> list[dict]:
    """JSON-ready speaker parameters."""
    return [asdict(s) for s in speakers]
