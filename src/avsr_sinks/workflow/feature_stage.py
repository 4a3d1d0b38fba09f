"""The features stage as the pipeline runs it: one frozen encoder over the corpus check's list of one
split, under one test condition (noise mixed into the audio), into a feature cache."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsr_sinks.data.manifest import Utterance
from avsr_sinks.data.media import read_audio, read_video
from avsr_sinks.data.noise import NoiseBank, mix_condition, parse_condition
from avsr_sinks.data.validation import read_usable
from avsr_sinks.encoders.video import load_video_encoder
from avsr_sinks.encoders.whisper import load_audio_encoder
from avsr_sinks.features.store import extract_features


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--modality", required=True, choices=["audio", "video"])
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--utterances", type=Path, required=True, help="the corpus check's list for the split")
    ap.add_argument("--babble-utterances", type=Path, help="babble conditions: the train split's list")
    ap.add_argument("--encoder-dir", type=Path, required=True)
    ap.add_argument("--split", required=True, choices=["train", "val", "test"])
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-dir", type=Path, required=True)


def cache_features(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Encode every utterance of ``args.utterances`` into the cache at ``args.out_dir``."""
    if args.modality == "video" and parse_condition(args.condition) is not None:
        raise SystemExit(f"--condition {args.condition}: noise conditions change the audio only")
    # The frozen encoders run on a GPU where there is one (the features are cached in float32 either way).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.modality == "audio":
        settings = params["audio_encoder"]
        encoder = load_audio_encoder(args.encoder_dir, settings["window_seconds"], settings["hub_id"], device)
    else:
        settings = params["video_encoder"]
        encoder = load_video_encoder(settings, args.encoder_dir, device)
    utterances = {u.uid: u for u in read_usable(args.utterances, args.corpus_dir)}
    manifest = {
        "encoder": encoder.identity(),
        "frame_rate": encoder.frame_rate,
        "corpus": params["corpus"]["name"],
        "split": args.split,
        "condition": args.condition,
    }
    load = _media_loader(args, utterances)
    extract_features(list(utterances), load, encoder.encode, args.out_dir, manifest, settings["batch_size"])


def _media_loader(args: argparse.Namespace, utterances: dict[str, Utterance]) -> Callable[[str], np.ndarray]:
    """uid -> the encoder's input: the video, the clean audio, or the audio with the condition's noise."""
    if args.modality == "video":
        return lambda uid: read_video(utterances[uid].video_path)
    noise = parse_condition(args.condition)
    if noise is None:
        return lambda uid: read_audio(utterances[uid].audio_path)
    kind, snrs_db = noise
    # Babble from training speakers only, so no test utterance leaks into the noise.
    if kind == "babble" and args.babble_utterances is None:
        raise SystemExit(f"--condition {args.condition}: babble needs --babble-utterances")
    bank = NoiseBank(read_usable(args.babble_utterances, args.corpus_dir) if kind == "babble" else ())
    return lambda uid: mix_condition(bank, read_audio(utterances[uid].audio_path), kind, snrs_db, uid)
