"""Phoneme-to-viseme model and a numpy renderer of 96x96 grayscale mouth-region video.

Visemes are deliberately many-to-one, as real lips are: p/b/m share one closed shape, f/v another,
and most tongue consonants (t d n l s z k g ng h y) look alike, so lip reading is much harder
than recognising the audio. Articulation follows a dominance (Cohen-Massaro style) blend: every
segment pulls the lips toward its target with a strength that decays away from its centre, so
weak consonants take the shape of neighbouring vowels while lip closures win locally.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

FPS = 25
SIZE = 96
_SUB = 8  # sub-samples per frame: parameters are averaged over the 40 ms "shutter"

VISEMES = ["sil", "bilabial", "labiodental", "dental", "postalveolar", "round_glide", "tongue",
           "open", "mid", "spread", "round"]  # fmt: skip
SIL, BMP, FV, TH, CH, WR, TONGUE, OPEN, MID, SPREAD, ROUND = range(len(VISEMES))

# Targets: lip opening, mouth width, lip rounding, teeth visibility, tongue visibility.
_TARGET = np.array([
    [0.00, 0.50, 0.10, 0.0, 0.0],  # sil
    [0.00, 0.50, 0.15, 0.0, 0.0],  # p b m
    [0.06, 0.55, 0.00, 1.0, 0.0],  # f v
    [0.12, 0.55, 0.05, 0.8, 1.0],  # th dh
    [0.15, 0.35, 0.75, 0.8, 0.0],  # sh zh ch jh
    [0.10, 0.25, 0.90, 0.0, 0.0],  # w r
    [0.12, 0.55, 0.10, 0.6, 0.2],  # t d n l s z k g ng h y
    [1.00, 0.60, 0.05, 0.3, 0.3],  # open vowels
    [0.70, 0.55, 0.10, 0.5, 0.2],  # mid vowels
    [0.45, 0.85, 0.00, 0.7, 0.1],  # close spread vowels
    [0.55, 0.28, 0.90, 0.1, 0.1],  # rounded vowels
])  # fmt: skip
# How strongly a segment imposes its target on its neighbourhood.
_DOMINANCE = np.array([1.0, 3.0, 2.5, 1.2, 1.5, 1.5, 1.0, 1.2, 1.0, 1.0, 1.3])

_BY_SYMBOL: dict[str, tuple[int, ...]] = {}
for _syms, _vis in [
    ("p b m", (BMP,)),
    ("f v", (FV,)),
    ("T D", (TH,)),
    ("S Z tS dZ", (CH,)),
    ("w r r- R", (WR,)),
    ("t d n l s z k g N h j t# n- l/ ? ; x", (TONGUE,)),
    ("a a# aa A: A@ A 0 0#", (OPEN,)),
    ("E e@ @ @2 @- @L 3 3: V e", (MID,)),
    ("i i: I I# I2 i@ i@3", (SPREAD,)),
    ("u: U U@ O: O2 O@ o@ O u", (ROUND,)),
    ("aI aI3 aI@", (OPEN, SPREAD)),
    ("aU", (OPEN, ROUND)),
    ("eI", (MID, SPREAD)),
    ("oU", (ROUND, ROUND)),
    ("OI", (ROUND, SPREAD)),
]:
    for _s in _syms.split():
        _BY_SYMBOL[_s] = _vis


def visemes_of(symbol: str) -> tuple[int, ...]:
    """Viseme ids of an eSpeak phoneme mnemonic (diphthongs give two, for their halves)."""
    sym = symbol.strip("',")
    if sym in _BY_SYMBOL:
        return _BY_SYMBOL[sym]
    stripped = sym.rstrip("0123456789#:-")
    return _BY_SYMBOL.get(stripped, (TONGUE,))  # unknown consonant-like symbols are near-invisible


@dataclass(frozen=True)
class Face:
    """Per-speaker appearance."""

    skin: float  # base gray level of the skin
    lip_ratio: float  # lip brightness relative to skin
    half_width: float  # mouth half-width at rest, px
    max_open: float  # inner opening height at opening=1, px
    upper_lip: float  # lip thickness, px
    lower_lip: float
    cx: float  # mouth centre, px
    cy: float
    light_angle: float  # direction of the lighting gradient, radians
    light_strength: float  # relative brightness change across the frame
    noise: float  # per-frame pixel noise sigma (gray levels)
    seed: int  # seed of the static skin texture


def make_face(seed: int, k: int) -> Face:
    """Appearance of speaker ``k``, derived from the corpus seed."""
    rng = np.random.default_rng([seed, 104729, k])
    return Face(
        skin=round(float(rng.uniform(105, 185)), 1),
        lip_ratio=round(float(rng.uniform(0.62, 0.78)), 3),
        half_width=round(float(rng.uniform(21, 26)), 2),
        max_open=round(float(rng.uniform(18, 24)), 2),
        upper_lip=round(float(rng.uniform(3.5, 5.5)), 2),
        lower_lip=round(float(rng.uniform(4.5, 7.0)), 2),
        cx=round(float(rng.uniform(46, 50)), 2),
        cy=round(float(rng.uniform(46, 52)), 2),
        light_angle=round(float(rng.uniform(0, 2 * np.pi)), 3),
        light_strength=round(float(rng.uniform(0.05, 0.25)), 3),
        noise=round(float(rng.uniform(1.5, 4.0)), 2),
        seed=int(rng.integers(2**31)),
    )


def face_table(faces: list[Face]) -> list[dict]:
    """JSON-ready face parameters."""
    return [asdict(f) for f in faces]


def articulate(phonemes: list[tuple[str, float, float]], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame lip parameters (n_frames, 5) and viseme ids (n_frames,) from a phoneme timeline.

    Gaps between phonemes (leading/trailing silence, pauses) are silence segments.
    """
    segs: list[tuple[float, float, int]] = []  # start, end, viseme
    t = 0.0
    for sym, start, end in phonemes:
        if start > t:
            segs.append((t, start, SIL))
        vis = visemes_of(sym)
        step = (end - start) / len(vis)
        segs.extend((start + i * step, start + (i + 1) * step, v) for i, v in enumerate(vis))
        t = max(t, end)
    total = n_frames / FPS
    segs.append((t, max(total, t) + 0.2, SIL))
    starts, ends, vis = (np.array(x) for x in zip(*segs, strict=True))
    centre, half = (starts + ends) / 2, np.maximum((ends - starts) / 2, 1e-3)
    times = (np.arange(n_frames * _SUB) + 0.5) / (FPS * _SUB)
    # Dominance falls off with distance beyond the segment's own half-length (25 ms scale).
    dist = np.maximum(np.abs(times[:, None] - centre[None, :]) - half[None, :], 0.0)
    weight = _DOMINANCE[vis][None, :] * np.exp(-((dist / 0.025) ** 2)) + 1e-9
    params = weight @ _TARGET[vis] / weight.sum(1, keepdims=True)
    params = params.reshape(n_frames, _SUB, 5).mean(1)
    mid = (np.arange(n_frames) + 0.5) / FPS
    active = (starts[None, :] <= mid[:, None]) & (mid[:, None] < ends[None, :])
    ids = np.where(active.any(1), vis[np.argmax(active, 1)], SIL)
    return params, ids.astype(int)


@functools.lru_cache(maxsize=64)
def _texture(face: Face) -> np.ndarray:
    """Static skin: lighting gradient plus smooth blotches, fixed per speaker."""
    rng = np.random.default_rng(face.seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5
    light = 1 + face.light_strength * (np.cos(face.light_angle) * x + np.sin(face.light_angle) * y) * 2
    coarse = rng.normal(0, 1, (7, 7))
    blotch = np.kron(coarse, np.ones((16, 16)))[8 : 8 + SIZE, 8 : 8 + SIZE]
    k = np.ones(9) / 9  # box blur to round off the blocks
    blotch = np.apply_along_axis(np.convolve, 0, blotch, k, "same")
    blotch = np.apply_along_axis(np.convolve, 1, blotch, k, "same")
    img = face.skin * light + 3.0 * blotch
    # Chin shadow and nostrils make the frame read as a lower face.
    chin = np.clip((np.hypot(x * 1.1, (y + 0.05) * 1.4) - 0.55) * 8, 0, 1)
    img *= 1 - 0.3 * chin
    for nx in (-0.1, 0.1):
        img *= 1 - 0.5 * np.clip(1 - np.hypot((x - nx) / 0.05, (y + 0.4) / 0.03), 0, 1)
    return img


def _coverage(u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Anti-aliased inside-ellipse coverage from a first-order signed-distance estimate."""
    a, b = np.maximum(a, 0.3), np.maximum(b, 0.3)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / r + 1e-6
    return np.clip(0.5 - (r - 1) / grad, 0.0, 1.0)


def render(params: np.ndarray, face: Face, rng: np.random.Generator) -> np.ndarray:
    """Frames (n, 96, 96) uint8 for per-frame lip parameters, with head motion and pixel noise."""
    n = len(params)
    p = params.astype(np.float32)
    opening, width, rounding, teeth, tongue = (p[:, i, None, None] for i in range(5))
    # Head motion: a few slow sinusoids with random phases (sub-pixel sway, slight tilt).
    tt = np.arange(n) / FPS
    freq, phase = rng.uniform(0.2, 1.2, (3, 2)), rng.uniform(0, 2 * np.pi, (3, 2))
    sway = np.sin(2 * np.pi * freq[:, :, None] * tt + phase[:, :, None]).sum(1).astype(np.float32)
    dx, dy, ang = 0.9 * sway[0], 0.7 * sway[1], 0.02 * sway[2]
    # Only the box that the lips can reach is drawn per frame; the rest is the static texture.
    rows, cols = _lip_box(face)
    y, x = np.mgrid[rows, cols].astype(np.float32)
    hw = face.half_width * (1 + 0.35 * (width - 0.5)) * (1 - 0.25 * rounding)
    oh = face.max_open * opening
    cx = face.cx + dx[:, None, None]
    cy = face.cy + dy[:, None, None] + 0.25 * oh  # the jaw drops, so the mouth centre moves down
    cos, sin = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    u = cos * (x - cx) + sin * (y - cy)
    v = -sin * (x - cx) + cos * (y - cy)
    protrude = 1 + 0.5 * rounding
    b_in = oh / 2
    a_in = hw * (0.85 - 0.3 * rounding)
    lip_b = np.where(v < 0, b_in + face.upper_lip * protrude, b_in + face.lower_lip * protrude)
    lips = _coverage(u, v, hw + 2.0, lip_b)
    inner = _coverage(u, v, a_in, np.maximum(b_in, 0.35))
    base = _texture(face)
    crop = base[rows, cols].astype(np.float32)
    patch = crop * (1 - lips * (1 - face.lip_ratio))
    # Inside the mouth: dark cavity, upper teeth from the top edge, tongue from the bottom.
    teeth_h = teeth * np.minimum(0.45 * b_in + 1.0, 4.5)
    tooth = np.clip(teeth_h - (v + b_in), 0, 1) * np.clip(b_in / 1.5, 0, 1)  # a closed seam stays dark
    tongue_h = tongue * 0.6 * b_in
    tong = np.minimum(np.clip(tongue_h - (b_in - v), 0, 1), 1 - tooth)
    cavity = 0.18 * face.skin + 8
    interior = cavity * (1 - tooth - tong) + 215 * tooth + 0.55 * face.skin * tong
    patch = patch * (1 - inner) + interior * inner
    img = np.broadcast_to(base.astype(np.float32), (n, SIZE, SIZE)).copy()
    img[:, rows, cols] = patch
    # Fresh Gaussian noise for every pixel is a large share of the cost, so frames take random
    # crops of a small per-utterance noise bank instead (no visible repetition at this noise level).
    bank = rng.standard_normal((8, SIZE + 32, SIZE + 32), dtype=np.float32) * face.noise
    offsets = rng.integers(0, 33, (n, 2))
    for k in range(n):
        oy, ox = offsets[k]
        img[k] += bank[k % 8, oy : oy + SIZE, ox : ox + SIZE]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _lip_box(face: Face) -> tuple[slice, slice]:
    """Bounding box of everything the lips can cover, including head motion and rotation."""
    half_w = face.half_width * 1.2 + 8
    up = face.upper_lip * 1.5 + face.max_open * 0.5 + 6
    down = face.lower_lip * 1.5 + face.max_open * 0.75 + 6
    return (
        slice(max(int(face.cy - up), 0), min(int(face.cy + down) + 1, SIZE)),
        slice(max(int(face.cx - half_w), 0), min(int(face.cx + half_w) + 1, SIZE)),
    )


def mouth_roi(face: Face) -> tuple[slice, slice]:
    """A fixed box around the speaker's mouth, large enough for head motion and full opening."""
    half_h, half_w = face.max_open * 0.6 + 8, face.half_width + 8
    top, bottom = int(face.cy - half_h), int(face.cy + half_h + 0.4 * face.max_open)
    return slice(max(top, 0), min(bottom, SIZE)), slice(int(face.cx - half_w), int(face.cx + half_w) + 1)


def measured_opening(frames: np.ndarray, roi: tuple[slice, slice]) -> np.ndarray:
    """Mouth opening measured from pixels: dark area per frame inside the mouth box.

    "Dark" is below 45% of the box median in the first frame, which shows the closed mouth at rest
    (every utterance starts with silence).
    """
    box = frames[:, roi[0], roi[1]]
    thresh = 0.45 * float(np.median(box[0]))
    return (box < thresh).sum(axis=(1, 2)).astype(np.float64)
