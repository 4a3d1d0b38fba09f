"""Import a checkpoint released by the Llama-AVSR authors as one of this project's checkpoint folders.

:mod:`avsr_sinks.importers.llama_avsr_checkpoint` reads the file and infers its configuration (it describes
their key layout); here the experiment it is imported as is chosen, the checkpoint is checked against that
experiment, the params and the base LLM's folder, and its tensors are written under this project's names.

Mapping onto this project's names: ``m_proj.j`` -> ``projectors.m.j``; ``lora_down_X`` ->
``...X_proj.lora_A.default.weight`` and ``lora_up_X`` -> ``lora_B`` (peft keeps nn.Linear's (out, in)
layout, as theirs does, so nothing is transposed). peft scales by ``lora_alpha / r``: the params'
``model.lora_alpha / model.lora_rank`` must equal the authors' ``alpha / reduction_lora``. AV-HuBERT's
adapters go to ``video_encoder_lora.safetensors`` under our port's names after
:func:`avsr_sinks.encoders.avhubert.add_lora`, with alpha = 2 x rank.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig

from avsr_sinks.importers.llama_avsr_checkpoint import (
    AUTHORS_SPECIAL_TOKENS,
    AVHUBERT_LORA_KEY,
    AVHUBERT_LORA_SCALING,
    BASE_WEIGHT_KEY,
    EMBED_KEY,
    LLM_LORA_KEY,
    LM_HEAD_KEY,
    LORA_PROJECTIONS,
    ImportRefusedError,
    InferredConfig,
    SourceCheckpoint,
    first_layer_lora_key,
    infer_config,
    lora_shape,
    projector_evidence,
    shape_of,
)
from avsr_sinks.io import atomic_path, git_commit, require_model_folder, sha256_file
from avsr_sinks.modeling.checkpoints import SPECIAL_TOKEN_EMBEDDINGS, VIDEO_ENCODER_LORA
from avsr_sinks.modeling.llm import LLM_FILES
from avsr_sinks.settings.grid import Experiment, parse_name
from avsr_sinks.settings.spec import RunSpec

TASK_OF_MODALITY = {"audio": "asr", "video": "vsr", "audiovisual": "avsr"}  # their --modality values
COMPRESSION_OF_MODE = {"stack": "stack", "avg-pooling": "avgpool"}  # their --compression-mode values


def requested_experiment(
    name: str | None, audio_rate: int | None, video_rate: int | None, inferred: InferredConfig
) -> Experiment:
    """The experiment a checkpoint is imported as: ``name``, or the checkpoint's task at the given rates
    (method baseline, seed 0). A rate left out is taken from stacking shapes; average pooling hides it."""
    flags = {"audio": audio_rate, "video": video_rate}
    if name is not None:
        experiment = parse_name(name)
        given = {"audio": experiment.audio_rate, "video": experiment.video_rate}
        for m, rate in flags.items():
            if rate is not None and rate != given[m]:
                raise ImportRefusedError(
                    f"--{m}-rate {rate} contradicts --experiment {name} ({m} rate {given[m]})"
                )
        return experiment
    for m in flags.keys() - set(inferred.modalities):
        if flags[m] is not None:
            raise ImportRefusedError(f"--{m}-rate given, but the checkpoint has no {m}_proj")
    rates = {}
    for m in inferred.modalities:
        rates[m] = flags[m] if flags[m] is not None else inferred.stacking_rates.get(m)
        if rates[m] is None:
            raise ImportRefusedError(
                f"the checkpoint's {m} projector does not reveal its compression rate (average pooling, or "
                f"no encoder weights to compare with): give --{m}-rate or --experiment"
            )
    task = "avsr" if len(inferred.modalities) == 2 else TASK_OF_MODALITY[inferred.modalities[0]]
    return Experiment(task, rates.get("audio"), rates.get("video"), "baseline", 0)


def _folder_tensor(llm_dir: Path, name: str) -> torch.Tensor | None:
    """One tensor of a Hugging Face model folder (single file or shards), or None if it is not there."""
    index = llm_dir / "model.safetensors.index.json"
    if index.is_file():
        shard = json.loads(index.read_text(encoding="utf-8"))["weight_map"].get(name)
        file = llm_dir / shard if shard else None
    else:
        file = llm_dir / "model.safetensors"
    if file is None or not file.is_file():
        return None
    with safe_open(str(file), "pt") as f:
        return f.get_tensor(name) if name in f.keys() else None  # noqa: SIM118 (safe_open has no __contains__)


def _experiment_conflicts(source: SourceCheckpoint, inferred: InferredConfig, spec: RunSpec) -> list[str]:
    """Where the projectors (and a Lightning checkpoint's arguments) contradict the experiment."""
    state, experiment, found = source.state, spec.experiment, []
    rates = {"audio": experiment.audio_rate, "video": experiment.video_rate}
    for m in sorted(set(experiment.modalities) - set(inferred.modalities)):
        found.append(
            f"{experiment.name} reads {m} features, but there is no {m}_proj.0.weight (the checkpoint has "
            f"{', '.join(f'{x}_proj' for x in inferred.modalities)})"
        )
    for m in sorted(set(inferred.modalities) - set(experiment.modalities)):
        found.append(f"{projector_evidence(state, m)}: {experiment.name} has no {m} input")
    compression = inferred.compression or spec.model.compression
    for m in set(experiment.modalities) & set(inferred.modalities):
        d_in = inferred.projector_inputs[m]
        width = inferred.encoder_widths.get(m, d_in // rates[m])
        if compression == "stack" and d_in != width * rates[m]:
            found.append(
                f"{projector_evidence(state, m)}, but stacking {rates[m]} frames ({m} rate of "
                f"{experiment.name}) of a {width}-wide encoder needs "
                f"({inferred.projector_hidden}, {width * rates[m]})"
            )
    hp = source.hyper_parameters or {}
    for m in experiment.modalities:
        stored = hp.get(f"downsample_ratio_{m}")
        if stored is not None and stored != rates[m]:
            found.append(
                f"hyper_parameters.downsample_ratio_{m} = {stored}, {experiment.name} asks for {rates[m]}"
            )
    if "modality" in hp and TASK_OF_MODALITY.get(hp["modality"]) != experiment.task:
        found.append(f"hyper_parameters.modality = {hp['modality']}, {experiment.name} is {experiment.task}")
    return found


def _params_conflicts(source: SourceCheckpoint, inferred: InferredConfig, spec: RunSpec) -> list[str]:
    """Where the checkpoint contradicts the run's model settings (which the record will carry)."""
    state, model, task, found = source.state, spec.model, spec.experiment.task, []
    hp = source.hyper_parameters or {}
    if inferred.compression and inferred.compression != model.compression:
        m = next(m for m in inferred.modalities if m in inferred.encoder_widths)
        found.append(
            f"model.compression is {model.compression}, but {projector_evidence(state, m)} on a "
            f"{inferred.encoder_widths[m]}-wide encoder means {inferred.compression}"
        )
    mode = COMPRESSION_OF_MODE.get(hp.get("compression_mode"))
    if mode and mode != model.compression:
        found.append(f"model.compression is {model.compression}, hyper_parameters.compression_mode {mode}")
    lora = inferred.llm_lora
    down = first_layer_lora_key(lora.projections[0], "down")
    for name, have, want, evidence in (
        ("projector_hidden", inferred.projector_hidden, model.projector_hidden, projector_evidence(state)),
        (
            "projector_layernorm",
            inferred.projector_layernorm,
            model.projector_layernorm,
            "keys *_proj.3.*",
        ),
        ("lora_rank", lora.rank, model.lora_rank, f"{down} {shape_of(state[down])}"),
        ("lora_targets", sorted(lora.projections), sorted(model.lora_targets), "keys lora_down_X"),
    ):
        if have != want:
            found.append(f"model.{name} is {want}, the checkpoint has {have} ({evidence})")
    if "alpha" in hp and "reduction_lora" in hp:
        theirs, ours = hp["alpha"] / hp["reduction_lora"], model.lora_alpha / model.lora_rank
        if not math.isclose(theirs, ours):
            found.append(
                f"model.lora_alpha / model.lora_rank = {ours:g}, the checkpoint's LoRA scaling is "
                f"hyper_parameters alpha / reduction_lora = {hp['alpha']} / {hp['reduction_lora']} "
                f"= {theirs:g}"
            )
    prompt_arg = {"asr": "prompt_audio", "vsr": "prompt_video", "avsr": "prompt_audiovisual"}[task]
    if prompt_arg in hp and hp[prompt_arg] != model.prompt:
        found.append(
            f"model.prompts.{task} is {model.prompt!r}, hyper_parameters.{prompt_arg} {hp[prompt_arg]!r}"
        )
    if model.match_embedding_norm:
        found.append(
            "model.match_embedding_norm must be false: the authors' model feeds its projector output as is"
        )
    if spec.train.ctc_weight:
        found.append("train.ctc_weight must be 0: the authors' model has no CTC head")
    if spec.train.warm_start:
        found.append(
            f"train.warm_start.{task} must be empty: the authors' model did not start from this project's "
            "checkpoints"
        )
    if "audio" in inferred.modalities:
        family = inferred.audio_encoder or hp.get("audio_encoder_name")
        if family is not None and "whisper" not in family:
            found.append(
                f"the audio projector was trained on {family} features; this project's audio "
                "encoder is Whisper"
            )
    return found


def _llm_conflicts(
    source: SourceCheckpoint, inferred: InferredConfig, llm_dir: Path, llm_config: Any
) -> list[str]:
    """Where the LoRA shapes, the vocabulary or the base weights contradict the LLM folder."""
    state, lora, found = source.state, inferred.llm_lora, []
    heads = llm_config.num_attention_heads
    head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // heads
    kv = llm_config.num_key_value_heads * head_dim
    sizes = {  # (in, out) of each projection
        "q_proj": (llm_config.hidden_size, heads * head_dim),
        "k_proj": (llm_config.hidden_size, kv),
        "v_proj": (llm_config.hidden_size, kv),
        "o_proj": (heads * head_dim, llm_config.hidden_size),
    }
    for projection in lora.projections:
        want_in, want_out = sizes[projection]
        for direction, expected in (("down", (lora.rank, want_in)), ("up", (want_out, lora.rank))):
            key = first_layer_lora_key(projection, direction)
            if shape_of(state[key]) != expected:
                found.append(
                    f"{key} has shape {shape_of(state[key])}, {llm_dir} "
                    f"({projection}: {want_in} -> {want_out}) needs {expected}"
                )
    if lora.layers != llm_config.num_hidden_layers:
        found.append(
            f"LoRA in {lora.layers} layers (llm.model.layers.N), {llm_dir} has {llm_config.num_hidden_layers}"
        )
    expected_rows = llm_config.vocab_size + len(AUTHORS_SPECIAL_TOKENS)
    if inferred.embedding_rows is not None and inferred.embedding_rows != expected_rows:
        found.append(
            f"{EMBED_KEY} has shape {shape_of(state[EMBED_KEY])}, but {llm_dir}'s vocabulary of "
            f"{llm_config.vocab_size} plus the {len(AUTHORS_SPECIAL_TOKENS)} added tokens needs "
            f"({expected_rows}, {llm_config.hidden_size})"
        )
    if BASE_WEIGHT_KEY in state and not found:
        reference = _folder_tensor(llm_dir, BASE_WEIGHT_KEY.removeprefix("llm."))
        theirs = state[BASE_WEIGHT_KEY]
        if reference is not None and (
            reference.shape != theirs.shape
            # bf16 training stores the frozen weights rounded to 8 significant bits
            or not torch.allclose(theirs.float(), reference.float(), rtol=2**-7, atol=1e-6)
        ):
            found.append(
                f"{BASE_WEIGHT_KEY} {shape_of(theirs)} differs from model.layers.0.self_attn.q_proj.weight "
                f"{shape_of(reference)} of {llm_dir}: the checkpoint was trained on another base LLM"
            )
    return found


def _our_tensors(source: SourceCheckpoint, inferred: InferredConfig) -> dict[str, torch.Tensor]:
    """Projectors and LLM LoRA under the names of ``AVSRModel.trainable_state_dict()``, in float32."""
    state, out = source.state, {}
    for m in inferred.modalities:
        for j in (0, 2, 3) if inferred.projector_layernorm else (0, 2):
            for kind in ("weight", "bias"):
                out[f"projectors.{m}.{j}.{kind}"] = state[f"{m}_proj.{j}.{kind}"]
    _, keys = lora_shape(state, LLM_LORA_KEY, source.path)
    for (layer, direction, letter), key in keys.items():
        out[_peft_lora_name("llm.base_model.model.model", layer, direction, letter)] = state[key]
    return {k: v.float().contiguous() for k, v in out.items()}


def _video_encoder_lora_tensors(source: SourceCheckpoint) -> dict[str, torch.Tensor]:
    """AV-HuBERT adapters under our port's names after ``add_lora`` (peft, adapter "default")."""
    _, keys = lora_shape(source.state, AVHUBERT_LORA_KEY, source.path)
    return {
        _peft_lora_name("encoder", layer, direction, letter): source.state[key].float().contiguous()
        for (layer, direction, letter), key in keys.items()
    }


def _peft_lora_name(prefix: str, layer: int, direction: str, letter: str) -> str:
    """peft's name for the tensor that their ``lora_<direction>_<letter>`` of ``layer`` becomes: A is
    the down projection, B the up projection; "default" is the adapter peft creates."""
    matrix = "A" if direction == "down" else "B"
    return f"{prefix}.layers.{layer}.self_attn.{LORA_PROJECTIONS[letter]}.lora_{matrix}.default.weight"


def _special_token_rows(source: SourceCheckpoint, llm_config: Any) -> dict[str, torch.Tensor]:
    """The appended rows of the input table, and of the output table when it is not tied to it."""
    rows = slice(llm_config.vocab_size, llm_config.vocab_size + len(AUTHORS_SPECIAL_TOKENS))
    out = {}
    if EMBED_KEY in source.state:
        out["input_embeddings"] = source.state[EMBED_KEY][rows]
    if LM_HEAD_KEY in source.state and not llm_config.tie_word_embeddings:
        out["output_embeddings"] = source.state[LM_HEAD_KEY][rows]
    return {k: v.float().contiguous() for k, v in out.items()}


def import_llama_avsr(
    source: SourceCheckpoint, out_dir: str | Path, spec: RunSpec, llm_dir: Path
) -> InferredConfig:
    """Write ``out_dir`` as the checkpoint of the run ``spec`` describes, refusing any contradiction.

    The folder holds what train.py writes (model.safetensors, experiment.json with the experiment's record,
    so :func:`avsr_sinks.modeling.checkpoints.load_checkpoint` accepts it under the same params), plus
    special_token_embeddings.safetensors and, for a checkpoint with AV-HuBERT LoRA,
    video_encoder_lora.safetensors. experiment.json records the source under ``imported_from``.
    """
    inferred = infer_config(source)
    require_model_folder(
        llm_dir,
        "--llm (llm.path)",
        LLM_FILES,
        spec.llm.hub_id,
        otherwise="put the Hugging Face folder of the LLM the checkpoint was trained on there "
        f"({inferred.llm_guess or f'hidden size {inferred.llm_hidden}'})",
    )
    llm_config = AutoConfig.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False)
    conflicts = [
        *_experiment_conflicts(source, inferred, spec),
        *_params_conflicts(source, inferred, spec),
        *_llm_conflicts(source, inferred, llm_dir, llm_config),
    ]
    if conflicts:
        raise ImportRefusedError(
            f"{source.path}: does not fit {spec.experiment.name} under these params:\n  "
            + "\n  ".join(conflicts)
        )
    tensors = _our_tensors(source, inferred)
    special_rows = _special_token_rows(source, llm_config)
    video_lora = inferred.video_encoder_lora
    record = {
        **spec.train_record(),
        "imported_from": {
            "path": str(source.path.resolve()),
            "sha256": sha256_file(source.path),
            "container": source.container,
            "inferred": asdict(inferred),
            "lora_scaling": {
                "value": spec.model.lora_alpha / spec.model.lora_rank,
                "from": "hyper_parameters (checked)"
                if source.hyper_parameters and "alpha" in source.hyper_parameters
                else "params: the file does not store it",
            },
            "special_token_rows": sorted(special_rows),
            "hyper_parameters": source.hyper_parameters,
        },
        "git_commit": git_commit(),
        "trainable_parameters": sum(t.numel() for t in tensors.values()),
    }
    if video_lora is not None:
        record["video_encoder_lora"] = {
            "file": VIDEO_ENCODER_LORA,
            "rank": video_lora.rank,
            "alpha": AVHUBERT_LORA_SCALING * video_lora.rank,
            "targets": list(video_lora.projections),
            "layers": video_lora.layers,
        }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file(tensors, str(tmp / "model.safetensors"))
        if special_rows:
            save_file(
                special_rows,
                str(tmp / SPECIAL_TOKEN_EMBEDDINGS),
                metadata={"tokens": json.dumps(AUTHORS_SPECIAL_TOKENS)},
            )
        if video_lora is not None:
            save_file(_video_encoder_lora_tensors(source), str(tmp / VIDEO_ENCODER_LORA))
        (tmp / "experiment.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return inferred
