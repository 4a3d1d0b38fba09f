"""Convert a fairseq AV-HuBERT checkpoint (e.g. ``large_vox_iter5.pt``) into this project's folder.

The checkpoint is read without running its pickle (:mod:`avsr_sinks.encoders.fairseq_checkpoint`); its
model config becomes an :class:`AVHubertConfig`, every state-dict key is loaded into
:class:`AVHubertModel` by name or is on the documented drop list, and ``model.safetensors`` +
``config.json`` are written once, atomically, for
:func:`avsr_sinks.encoders.avhubert_encoder.load_video_encoder`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from avsr_sinks.encoders.avhubert import MODEL_TYPE, AVHubertConfig, AVHubertModel
from avsr_sinks.encoders.fairseq_checkpoint import read_fairseq_checkpoint
from avsr_sinks.io import atomic_path, load_state_exactly, sha256_file

log = logging.getLogger(__name__)

# Checkpoint keys with no part in inference. Each may be absent; any other key must be loaded.
DROPPED_KEYS = {
    "mask_emb": "pre-training input mask embedding (masked prediction only)",
    "final_proj.weight": "pre-training head projecting to the cluster-target space",
    "final_proj.bias": "pre-training head projecting to the cluster-target space",
    "label_embs_concat": "pre-training cluster-label embeddings",
    "target_glu.0.weight": "optional pre-training target projection",
    "target_glu.0.bias": "optional pre-training target projection",
}
# Fine-tuned sequence-to-sequence checkpoints (AVHubertSeq2Seq) wrap the pre-trained model as
# "encoder.w2v_model" next to a text decoder, which the video encoder does not use.
FINETUNED_PREFIX = "encoder.w2v_model."
FINETUNED_DROPPED_PREFIXES = ("decoder.",)


def _fairseq_model_config(ckpt: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """The AV-HuBERT model section of a checkpoint's configuration, from "cfg" or the older "args"."""
    cfg = ckpt.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        model_cfg = cfg["model"]
    elif isinstance(ckpt.get("args"), dict):
        model_cfg = ckpt["args"]
    else:
        raise ValueError(f"{source}: no model configuration (neither cfg.model nor args) in the checkpoint")
    if "w2v_args" in model_cfg:  # a fine-tuned model: the pre-trained encoder's config is nested
        w2v_args = model_cfg["w2v_args"]
        if not isinstance(w2v_args, dict) or not isinstance(w2v_args.get("model"), dict):
            raise ValueError(f"{source}: fine-tuned checkpoint without the pre-trained model's config")
        model_cfg = w2v_args["model"]
    name = model_cfg.get("_name", model_cfg.get("arch"))
    if name not in (None, MODEL_TYPE):
        raise ValueError(f"{source}: holds a fairseq {name!r} model, not {MODEL_TYPE}")
    return model_cfg


def avhubert_config_from_fairseq(model_cfg: Mapping[str, Any], source: Path) -> AVHubertConfig:
    """Our config from fairseq's, refusing the variants the port does not implement."""
    unsupported = {
        key: (model_cfg[key], wanted)
        for key, wanted in (
            ("modality_fuse", "concat"),
            ("activation_fn", "gelu"),
            ("resnet_relu_type", "prelu"),
            ("sub_encoder_layers", 0),
        )
        if key in model_cfg and model_cfg[key] != wanted
    }
    if unsupported:
        raise ValueError(
            f"{source}: AV-HuBERT variant not ported: (value, supported) per field {unsupported}"
        )
    # A field fairseq left at its default may be absent from an argparse-era config: those take
    # fairseq's AVHubertConfig defaults, which are the base model's, except audio_feat_dim (no default).
    fairseq_defaults = {
        "encoder_embed_dim": 768,
        "encoder_layers": 12,
        "encoder_attention_heads": 12,
        "encoder_ffn_embed_dim": 3072,
        "layer_norm_first": False,
        "conv_pos": 128,
        "conv_pos_groups": 16,
    }
    values: dict[str, Any] = {}
    for f in fields(AVHubertConfig):
        value = model_cfg.get(f.name, fairseq_defaults.get(f.name))
        if not isinstance(value, bool | int) or isinstance(value, bool) != (f.type == "bool"):
            raise ValueError(f"{source}: model config field {f.name} is {value!r}, not of type {f.type}")
        values[f.name] = value
    return AVHubertConfig(**values)


def _encoder_state(model_state: Mapping[str, Any], source: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Split a checkpoint's state dict into the encoder's tensors and the keys dropped on purpose."""
    finetuned = any(k.startswith(FINETUNED_PREFIX) for k in model_state)
    prefix = FINETUNED_PREFIX if finetuned else ""
    state: dict[str, torch.Tensor] = {}
    dropped, foreign = [], []
    for key, value in model_state.items():
        if finetuned and key.startswith(FINETUNED_DROPPED_PREFIXES):
            dropped.append(key)
        elif not key.startswith(prefix):
            foreign.append(key)
        elif key[len(prefix) :] in DROPPED_KEYS:
            dropped.append(key)
        elif not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: state-dict entry {key} is a {type(value).__name__}, not a tensor")
        else:
            state[key[len(prefix) :]] = value
    if foreign:
        raise ValueError(f"{source}: unexpected keys outside {prefix!r}: {sorted(foreign)}")
    return state, sorted(dropped)


def convert_avhubert(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    extra_inert_globals: Iterable[str] = (),
) -> Path:
    """Convert a fairseq AV-HuBERT checkpoint into a folder: model.safetensors, config.json, conversion.json.

    Every state-dict key is either loaded into :class:`AVHubertModel` or in :data:`DROPPED_KEYS` (or under
    a fine-tuned model's decoder); any other key, a missing key or a shape mismatch fails, naming the keys.
    Weights are stored as float32 (fairseq fp16 runs save half-precision weights). The folder is written
    atomically.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ckpt = read_fairseq_checkpoint(checkpoint, extra_inert_globals)
    if not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{checkpoint}: no 'model' state dict in the checkpoint")
    config = avhubert_config_from_fairseq(_fairseq_model_config(ckpt, checkpoint), checkpoint)
    state, dropped = _encoder_state(ckpt["model"], checkpoint)
    model = AVHubertModel(config)
    load_state_exactly(
        model,
        state,
        checkpoint,
        f"AV-HuBERT {config}",
        "convert a checkpoint as the AV-HuBERT release publishes it (a damaged download is fetched again)",
    )
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(
            json.dumps({"model_type": MODEL_TYPE, **asdict(config)}, indent=2) + "\n", encoding="utf-8"
        )
        (tmp / "conversion.json").write_text(
            json.dumps(
                {
                    "source_file": str(checkpoint),
                    "source_sha256": sha256_file(checkpoint),
                    "loaded_keys": len(state),
                    "dropped_keys": dropped,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    log.info(
        "converted %s (%d keys loaded, %d dropped) into %s", checkpoint, len(state), len(dropped), out_dir
    )
    return out_dir


# --- the frozen encoder -----------------------------------------------------------------------------
