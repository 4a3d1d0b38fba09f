"""The Llama-AVSR / auto_avsr input transforms, with explicit random generators.

Layouts:
  * video in: uint8 ``(T, H, W)`` grayscale or ``(T, H, W, 3)`` RGB (numpy or torch);
    video out: float32 ``(T, 1, 88, 88)``, normalised with mean 0.421 and std 0.165.
  * audio in/out: float32 ``(N,)`` mono 16 kHz samples (Llama-AVSR keeps ``(N, 1)``; we drop the
    singleton axis and the collate adds nothing back).

Training pipelines: video ``/255 -> random crop 88 -> gray -> time mask(10, 25) -> normalise``; audio
``time mask(6400, 16000) -> [noise] -> layer norm``. Evaluation: centre crop, no masking. Randomness only
comes from the ``torch.Generator`` passed in, so a seed fixes every crop and mask.
"""

from __future__ import annotations

import numpy as np
import torch

VIDEO_MEAN = 0.421
VIDEO_STD = 0.165
CROP_SIZE = 88
SAMPLES_PER_FRAME = 640  # 16000 Hz / 25 fps
VIDEO_MASK = (10, 25)  # (window, stride) in frames: up to 0.4 s masked per second
AUDIO_MASK = (6400, 16000)  # the same in samples


def _randint(low: int, high: int, gen: torch.Generator) -> int:
    """Uniform integer in ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=gen).item())


def as_video_tensor(video: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W)`` or ``(T, H, W, 3)`` -> float32 ``(T, C, H, W)`` in ``[0, 1]`` (C = 1 or 3)."""
    x = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"video must be (T, H, W) or (T, H, W, 3), got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).to(torch.float32) / 255.0


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """``(T, 3, H, W)`` -> ``(T, 1, H, W)`` with ITU-R 601 luma weights (torchvision's Grayscale)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def center_crop(x: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """Crop the central ``size x size`` window of ``(..., H, W)``."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} crop")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def random_crop(x: torch.Tensor, gen: torch.Generator, size: int = CROP_SIZE) -> torch.Tensor:
    """One random ``size x size`` window of ``(..., H, W)``, the same for every frame."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} crop")
    top, left = _randint(0, h - size + 1, gen), _randint(0, w - size + 1, gen)
    return x[..., top : top + size, left : left + size]


def time_mask(x: torch.Tensor, window: int, stride: int, gen: torch.Generator) -> torch.Tensor:
    """auto_avsr's AdaptiveTimeMask on axis 0: one mask per ``stride`` steps, each shorter than ``window``.

    Returns a masked copy. Like the original, the start is drawn against one random width and the zeroed
    span uses a second, independent width; we keep that so masking statistics match the recipe.
    """
    out = x.clone()
    length = out.shape[0]
    n_mask = int((length + stride - 0.1) // stride)
    widths = torch.randint(0, window, (n_mask, 2), generator=gen)
    for t, span in widths.tolist():
        if length - t <= 0:
            continue
        start = _randint(0, length - t, gen)
        if t == 0:
            continue
        out[start : start + span] = 0
    return out


def normalize_video(x: torch.Tensor, mean: float = VIDEO_MEAN, std: float = VIDEO_STD) -> torch.Tensor:
    return (x - mean) / std


def layer_norm_audio(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the whole waveform (Llama-AVSR's Whisper-path audio normalisation)."""
    return torch.nn.functional.layer_norm(x, x.shape, eps=1e-8)


def cut_or_pad(audio: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Trim or zero-pad ``(N, ...)`` at the end to ``num_samples`` along axis 0."""
    n = audio.shape[0]
    if n > num_samples:
        return audio[:num_samples]
    if n < num_samples:
        pad = audio.new_zeros((num_samples - n, *audio.shape[1:]))
        return torch.cat([audio, pad], dim=0)
    return audio


def align_audio_to_video(audio: torch.Tensor, num_video_frames: int) -> torch.Tensor:
    """For AVSR: exactly 640 samples (40 ms at 16 kHz) per video frame, as Llama-AVSR's dataset does."""
    return cut_or_pad(audio, num_video_frames * SAMPLES_PER_FRAME)


class VideoTransform:
    """uint8 ``(T, H, W[, 3])`` -> float32 ``(T, 1, 88, 88)``; random crop and time mask only at train."""

    def __init__(self, train: bool, crop_size: int = CROP_SIZE, time_masking: bool = True) -> None:
        self.train = train
        self.crop_size = crop_size
        self.time_masking = time_masking

    def __call__(self, video: np.ndarray | torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        x = as_video_tensor(video)
        if self.train:
            if gen is None:
                raise ValueError("VideoTransform(train=True) needs a torch.Generator for its random crop")
            x = random_crop(x, gen, self.crop_size)
        else:
            x = center_crop(x, self.crop_size)
        x = to_gray(x)
        if self.train and self.time_masking:
            x = time_mask(x, *VIDEO_MASK, gen=gen)
        return normalize_video(x).contiguous()


class AudioTransform:
    """float ``(N,)`` -> float32 ``(N,)``: time mask at train, then whole-utterance layer norm.

    Noise is added by the dataset before this transform (see :mod:`avsr_sinks.data.noise`), matching
    Llama-AVSR's order mask -> noise -> normalise.
    """

    def __init__(self, train: bool, time_masking: bool = True, normalize: bool = True) -> None:
        self.train = train
        self.time_masking = time_masking
        self.normalize = normalize

    def mask(self, audio: np.ndarray | torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """The training-only part (time masking); identity at evaluation."""
        x = torch.as_tensor(audio, dtype=torch.float32)
        if x.ndim != 1:
            raise ValueError(f"audio must be 1-D (N,), got shape {tuple(x.shape)}")
        if self.train and self.time_masking:
            if gen is None:
                raise ValueError("AudioTransform(train=True) needs a torch.Generator for time masking")
            x = time_mask(x, *AUDIO_MASK, gen=gen)
        return x

    def finish(self, audio: torch.Tensor) -> torch.Tensor:
        """The deterministic tail (layer norm)."""
        return layer_norm_audio(audio) if self.normalize else audio

    def __call__(self, audio: np.ndarray | torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        return self.finish(self.mask(audio, gen))
