"""The model of a run spec, warm starts from other checkpoints, and loading a checkpoint under its record."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from avsr_sinks.io import load_safetensors
from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.settings.spec import RunSpec, differences

# Optional files of a checkpoint folder (avsr_sinks.importers.llama_avsr writes them). The rows of the LLM's
# added special tokens that the checkpoint was trained with: tensors input_embeddings and, for untied
# tables, output_embeddings; metadata "tokens", their JSON list.
SPECIAL_TOKEN_EMBEDDINGS = "special_token_embeddings.safetensors"
# LoRA of the video encoder under the AV-HuBERT port's names; the record says so under video_encoder_lora.
VIDEO_ENCODER_LORA = "video_encoder_lora.safetensors"


def model_config(spec: RunSpec, input_dims: Mapping[str, int]) -> ModelConfig:
    experiment, m = spec.experiment, spec.model
    rates = {"audio": experiment.audio_rate, "video": experiment.video_rate}
    return ModelConfig(
        modalities=experiment.modalities,
        rates={mod: rates[mod] for mod in experiment.modalities},
        input_dims={mod: input_dims[mod] for mod in experiment.modalities},
        compression=m.compression,
        projector_hidden=m.projector_hidden,
        projector_layernorm=m.projector_layernorm,
        match_embedding_norm=m.match_embedding_norm,
        lora_rank=m.lora_rank,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        lora_targets=m.lora_targets,
        prompt=m.prompt,
        ctc_head=spec.train.ctc_head,
        ctc_classes=spec.train.ctc_classes or "vocabulary",
        ctc_modalities=spec.train.ctc_modalities,
    )


def warm_start(model: AVSRModel, checkpoints: Sequence[Path]) -> dict[str, str]:
    """Initialise ``model``'s trainable tensors from finished checkpoints (train.warm_start): each tensor
    that a checkpoint holds under the same name, from the first checkpoint that holds it; the rest keep
    their fresh initialisation. Returns {tensor: checkpoint} for the tensors taken."""
    state = model.trainable_state_dict()
    taken: dict[str, str] = {}
    for checkpoint in map(Path, checkpoints):
        path = checkpoint / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the warm-start checkpoint is not finished; rerun its train rule"
            )
        for name, tensor in load_safetensors(path, f"rerun the train rule of {checkpoint}").items():
            if name not in state or name in taken:
                continue
            if tensor.shape != state[name].shape:
                raise ValueError(
                    f"{path}: tensor {name} has shape {tuple(tensor.shape)}, this model's has "
                    f"{tuple(state[name].shape)}; the warm start needs the same model settings"
                )
            state[name], taken[name] = tensor, str(checkpoint)
    if checkpoints and not taken:
        raise ValueError(
            f"the warm-start checkpoints {[str(c) for c in checkpoints]} hold no tensor of this model"
        )
    model.load_trainable_state_dict(state)
    return taken


def load_checkpoint(checkpoint: Path, spec: RunSpec, input_dims: Mapping[str, int]) -> AVSRModel:
    """Rebuild the model of ``spec``'s experiment and load its trained tensors, refusing a checkpoint
    trained under other settings."""
    checkpoint, experiment = Path(checkpoint), spec.experiment
    meta_path = checkpoint / "experiment.json"
    if not meta_path.is_file() or not (checkpoint / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{checkpoint}: not a finished checkpoint (experiment.json and model.safetensors "
            "expected); rerun the train rule for it"
        )
    stored = json.loads(meta_path.read_text(encoding="utf-8"))
    wanted = spec.train_record()
    mismatches = differences({k: stored.get(k) for k in wanted}, wanted)
    if mismatches:
        raise ValueError(
            f"{meta_path}: checkpoint does not match the requested experiment {experiment.name}:\n  "
            + "\n  ".join(mismatches)
            + f"\npoint --checkpoint at {experiment.name}'s own checkpoint, or rerun its train rule"
        )
    if stored.get("video_encoder_lora"):
        raise ValueError(
            f"{meta_path}: the checkpoint adapts the video encoder with LoRA ({VIDEO_ENCODER_LORA}, "
            f"{stored['video_encoder_lora']}); its video features must come from the encoder run with those "
            "adapters, but this pipeline reads features cached from the frozen encoder, so decoding would "
            "ignore them"
        )
    llm, tokenizer = load_llm(spec.llm.path, spec.model.attn_implementation, spec.llm.hub_id)
    model = AVSRModel(model_config(spec, input_dims), llm, tokenizer)
    weights = checkpoint / "model.safetensors"
    restore = (
        f"restore it with `dvc checkout {checkpoint}` where DVC tracks it, or rerun the train rule for it"
    )
    model.load_trainable_state_dict(load_safetensors(weights, restore))
    if (checkpoint / SPECIAL_TOKEN_EMBEDDINGS).is_file():
        load_special_token_embeddings(model, checkpoint / SPECIAL_TOKEN_EMBEDDINGS)
    return model.to(torch.float32)


def load_special_token_embeddings(model: AVSRModel, path: Path) -> None:
    """Overwrite the embedding rows of the special tokens named in ``path`` (see SPECIAL_TOKEN_EMBEDDINGS).

    Added tokens start from random rows; a checkpoint's projectors and adapters were trained against the
    rows its own run drew, so those rows belong to the checkpoint.
    """
    with safe_open(str(path), "pt") as f:
        tokens = json.loads(f.metadata()["tokens"])
        ids = model.tokenizer.convert_tokens_to_ids(tokens)
        if model.tokenizer.unk_token_id in ids:
            raise ValueError(f"{path}: the tokenizer lacks some of {tokens}")
        tables = {"input_embeddings": model.llm.get_input_embeddings()}
        if "output_embeddings" in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
            tables["output_embeddings"] = model.llm.get_output_embeddings()
        with torch.no_grad():
            for name, table in tables.items():
                table.weight[ids] = f.get_tensor(name).to(table.weight.dtype)
