"""Torch dataset, frame-budget batch sampler and padding collate for audio-visual utterances.

Sample dict from :class:`AVDataset` (keys present per ``modalities``):
  * ``uid`` str, ``transcript`` str, ``token_ids`` tuple[int, ...], ``num_video_frames`` int
  * ``video`` float32 ``(T, 1, 88, 88)`` normalised mouth crops
  * ``audio`` float32 ``(N,)`` 16 kHz; with both modalities N == 640 * T exactly

Batch dict from :func:`collate` (B samples):
  * ``uids``, ``transcripts``, ``token_ids``: lists of length B
  * ``video`` ``(B, T_max, 1, 88, 88)`` zero-padded, ``video_lengths`` int64 ``(B,)``,
    ``video_mask`` bool ``(B, T_max)`` (True on real frames)
  * ``audio`` ``(B, N_max)``, ``audio_lengths`` ``(B,)``, ``audio_mask`` bool ``(B, N_max)``
  * ``skipped``: ``(file, line, reason, uid)`` rows of samples dropped in this batch
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from avsr_sinks.data import transforms as T
from avsr_sinks.data.manifest import BAD_SAMPLE_MODES, DataError, SkipReport, Utterance
from avsr_sinks.data.noise import NoiseBank
from avsr_sinks.data.validation import CorpusRules, check_media

log = logging.getLogger(__name__)

MODALITIES = ("audio", "video")


class Skipped(NamedTuple):
    """Stand-in a dataset returns for a bad sample under ``on_bad_sample="skip"``; the collate drops it."""

    file: str
    line: int
    reason: str
    uid: str


class AVDataset(Dataset):
    """Utterances -> transformed tensors. Randomness (crop, masks, noise window) is seeded by
    ``(seed, epoch, index)``, so results do not depend on which worker loads a sample.

    ``snr_db``: one value, or a list to draw from per sample, to add ``noise_kind`` noise from ``noise``
    (mixed before normalisation, after masking, as in Llama-AVSR). Call :meth:`set_epoch` each epoch
    (with persistent DataLoader workers, recreate the loader instead: workers hold a copy).
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        train: bool,
        modalities: Sequence[str] = MODALITIES,
        on_bad_sample: str = "error",
        av_tolerance_s: float = 0.1,
        seed: int = 0,
        noise: NoiseBank | None = None,
        snr_db: float | Sequence[float] | None = None,
        noise_kind: str = "babble",
    ) -> None:
        bad = set(modalities) - set(MODALITIES)
        if bad or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
        if on_bad_sample not in BAD_SAMPLE_MODES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_MODES}, got {on_bad_sample!r}")
        if snr_db is not None and noise is None:
            raise ValueError("snr_db given without a NoiseBank to draw noise from")
        self.utterances = list(utterances)
        self.train = train
        self.modalities = tuple(modalities)
        self.on_bad_sample = on_bad_sample
        self.av_tolerance_s = av_tolerance_s
        self.seed = seed
        self.epoch = 0
        self.noise = noise
        self.snr_choices = None if snr_db is None else np.atleast_1d(np.asarray(snr_db, dtype=np.float64))
        self.noise_kind = noise_kind
        self.video_transform = T.VideoTransform(train)
        self.audio_transform = T.AudioTransform(train)

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def lengths(self) -> list[int]:
        """Video-frame lengths from the labels, for :class:`FrameBudgetBatchSampler`."""
        return [u.num_video_frames for u in self.utterances]

    def _seed(self, index: int, stream: int) -> int:
        # Evaluation draws ignore the epoch so test-set noise is the same every time.
        epoch = self.epoch if self.train else 0
        return int(np.random.SeedSequence([self.seed, epoch, index, stream]).generate_state(1)[0])

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        utt = self.utterances[index]
        try:
            return self._load(index, utt)
        except DataError as err:
            failure = err
        except ValueError as err:  # a transform refusing this sample's shape or signal
            failure = DataError(str(err), utt.video_path, utt.line, utt.uid)
        if self.on_bad_sample == "error":
            raise failure
        log.warning("skipping sample: %s", failure)
        return Skipped(str(failure.file), utt.line, failure.reason, utt.uid)

    def _load(self, index: int, utt: Utterance) -> dict[str, Any]:
        # The pipeline's own checks of a sample (validation.check_media), then the modalities asked for.
        video, audio = check_media(utt, CorpusRules(av_tolerance_s=self.av_tolerance_s))
        video = video if "video" in self.modalities else None
        audio = audio if "audio" in self.modalities else None
        gen = torch.Generator().manual_seed(self._seed(index, 0))
        out: dict[str, Any] = {
            "uid": utt.uid,
            "transcript": utt.transcript,
            "token_ids": utt.token_ids,
            "num_video_frames": utt.num_video_frames,
        }
        if video is not None:
            out["video"] = self.video_transform(video, gen)
        if audio is not None:
            if video is not None:
                audio = T.align_audio_to_video(torch.from_numpy(audio), len(video)).numpy()
            x = self.audio_transform.mask(audio, gen).numpy()
            if self.snr_choices is not None and self.noise is not None:
                rng = np.random.default_rng(self._seed(index, 1))
                snr = float(rng.choice(self.snr_choices))
                x = self.noise.mix(x, snr, rng, self.noise_kind)
                out["snr_db"] = snr
            out["audio"] = self.audio_transform.finish(torch.from_numpy(np.ascontiguousarray(x)))
        return out


def _pad(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-pad along axis 0 -> (stacked (B, L_max, ...), lengths (B,), mask (B, L_max))."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded, lengths, mask


def collate(
    samples: Sequence[dict[str, Any] | Skipped | None], skip_report: SkipReport | None = None
) -> dict:
    """Pad a list of samples into a batch (layout in the module docstring), dropping skipped ones.

    Skipped samples are listed in ``batch["skipped"]``. ``skip_report`` is filled directly only in the
    main process; with DataLoader workers call ``skip_report.record_batch(batch)`` in the training loop.
    A batch whose samples were all skipped has ``uids == []`` and no tensors: skip it.
    """
    good = [s for s in samples if isinstance(s, dict)]
    skipped = [tuple(s) for s in samples if isinstance(s, Skipped)]
    if skip_report is not None and get_worker_info() is None:
        for row in skipped:
            skip_report.add(*row)
    batch: dict[str, Any] = {
        "uids": [s["uid"] for s in good],
        "transcripts": [s["transcript"] for s in good],
        "token_ids": [s["token_ids"] for s in good],
        "skipped": skipped,
    }
    if not good:
        return batch
    for key in MODALITIES:
        if key in good[0]:
            batch[key], batch[f"{key}_lengths"], batch[f"{key}_mask"] = _pad([s[key] for s in good])
    if "snr_db" in good[0]:
        batch["snr_db"] = torch.tensor([s["snr_db"] for s in good])
    return batch


class Collate:
    """Picklable ``collate_fn`` bound to a SkipReport (``DataLoader(..., collate_fn=Collate(report))``)."""

    def __init__(self, skip_report: SkipReport | None = None) -> None:
        self.skip_report = skip_report

    def __call__(self, samples: Sequence[dict[str, Any] | Skipped | None]) -> dict:
        return collate(samples, self.skip_report)


class FrameBudgetBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches within a video-frame budget, deterministic per ``(seed, epoch)``.

    Rule ``"padded"`` (default) keeps ``max(length) * batch_size <= max_frames``, which is what
    Llama-AVSR / auto_avsr's ByFrameCountSampler enforces through fairseq's ``batch_by_size(max_tokens)``
    and what bounds the padded tensor size; ``"sum"`` keeps ``sum(lengths) <= max_frames``.

    Shuffled: indices are permuted, cut into buckets of ``bucket_size``, sorted by length inside each
    bucket, packed greedily, and the batch order is shuffled. Unshuffled: one global length sort, packed
    in order. Every index appears exactly once per epoch; a sample longer than ``max_frames`` gets a batch
    of its own (warned about once) instead of being dropped.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int | None = 1000,
        rule: str = "padded",
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or (self.lengths <= 0).any():
            raise ValueError("lengths must be a 1-D sequence of positive video-frame counts")
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if rule not in ("padded", "sum"):
            raise ValueError(f"rule must be 'padded' or 'sum', got {rule!r}")
        self.max_frames, self.shuffle, self.seed, self.rule = int(max_frames), shuffle, seed, rule
        self.bucket_size = len(self.lengths) if not bucket_size else int(bucket_size)
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        over = np.flatnonzero(self.lengths > self.max_frames)
        if over.size:
            log.warning(
                "%d sample(s) exceed max_frames=%d and get a batch of their own (indices %s%s)",
                over.size,
                self.max_frames,
                over[:10].tolist(),
                " ..." if over.size > 10 else "",
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = total = 0
        for idx in order.tolist():
            n = int(self.lengths[idx])
            cost = max(longest, n) * (len(batch) + 1) if self.rule == "padded" else total + n
            if batch and cost > self.max_frames:
                batches.append(batch)
                batch, longest, total = [], 0, 0
            batch.append(idx)
            longest, total = max(longest, n), total + n
        if batch:
            batches.append(batch)
        return batches

    def batches(self) -> list[list[int]]:
        """This epoch's batches (computed once per epoch)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        if not self.shuffle:
            result = self._pack(np.argsort(self.lengths, kind="stable"))
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            perm = rng.permutation(len(self.lengths))
            result = []
            for start in range(0, len(perm), self.bucket_size):
                bucket = perm[start : start + self.bucket_size]
                result.extend(self._pack(bucket[np.argsort(self.lengths[bucket], kind="stable")]))
            result = [result[i] for i in rng.permutation(len(result))]
        self._cache = (self.epoch, result)
        return result

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())
