"""Import a checkpoint released by the Llama-AVSR authors as one of this project's checkpoint folders.

Their checkpoints hold the state dict of their ``AVSR_LLMs`` module (models/modeling_AVSRLLM.py of
umbertocappellazzo/Llama-AVSR), in one of two containers:

- a released ``.pth`` (``model_avg_N.pth`` from utils/avg_checkpoints_original.py, the files of the
  README's model zoo): a flat dict of tensors, keys relative to ``AVSR_LLMs``;
- a Lightning ``epoch=N.ckpt``: the same tensors under ``"state_dict"`` with a ``model.`` prefix, plus
  ``"hyper_parameters"`` (the command-line arguments, as a plain dict).

Keys read (``i`` a decoder or encoder layer, ``m`` in ``audio``/``video``):

- ``m_proj.0.weight|bias``, ``m_proj.2.weight|bias``: the projector Linear -> ReLU -> Linear, and
  ``m_proj.3.weight|bias`` when its LayerNorm is on. Its input width is the encoder width times the rate
  when frames are stacked, the encoder width when they are average-pooled.
- ``llm.model.layers.i.self_attn.lora_down_X.weight`` (rank, in) and ``lora_up_X.weight`` (out, rank),
  X in Q/K/V/O (their code adapts Q and V): hand-written LoRA adding
  ``lora_up(lora_down(x)) * alpha / reduction_lora`` to the projection; the rank is
  ``round(hidden / reduction_lora)``, so the scaling is not ``alpha / rank`` and is not in the shapes.
- ``video_encoder.encoder.layers.i.self_attn.lora_down_Q|V.weight`` and ``lora_up_Q|V.weight``: LoRA on
  AV-HuBERT's q and v projections, scaling 2 (set in modeling_AVSRLLM.py).
- ``llm.model.embed_tokens.weight`` and ``llm.lm_head.weight``: the LLM's tables after they appended
  ``<pad> <audio> </audio> <video> </video>`` (in that order, models/lightning.py); the appended rows are
  randomly initialised and frozen, and the projectors and adapters were trained against them, so they
  are carried over.
- ``llm.model.layers.0.self_attn.q_proj.weight``, ``audio_encoder.*``, ``video_encoder.*``: frozen base
  weights, read only to check the base LLM and to learn the encoder widths.

Layout versions: the March 2025 release (projectors without LayerNorm, frames always stacked) and the
November 2025 release of the attention-sink paper (optional LayerNorm, stacking or average pooling);
their keys differ only by ``m_proj.3`` and the projector input width. Not handled (refused): the
``audiovisual_avhubert`` mode (``audiovisual_encoder.*``, ``audiovisual_proj.*``), audio encoders other
than Whisper, and an LLM without LoRA.

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
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig

from avsr_sinks.io import atomic_path, git_commit, require_model_folder, sha256_file
from avsr_sinks.modeling.checkpoints import SPECIAL_TOKEN_EMBEDDINGS, VIDEO_ENCODER_LORA
from avsr_sinks.modeling.llm import LLM_FILES
from avsr_sinks.settings.grid import Experiment, parse_name
from avsr_sinks.settings.spec import resolve_run

# Appended to the tokenizer by models/lightning.py in one add_special_tokens call, so they take the
# ids after the base vocabulary in this order.
AUTHORS_SPECIAL_TOKENS = ("<pad>", "<audio>", "</audio>", "<video>", "</video>")
AVHUBERT_LORA_SCALING = 2.0  # modeling_AVSRLLM.py sets self_attn.scaling_lora = 2 on every layer
LORA_PROJECTIONS = {"Q": "q_proj", "K": "k_proj", "V": "v_proj", "O": "o_proj"}
TASK_OF_MODALITY = {"audio": "asr", "video": "vsr", "audiovisual": "avsr"}  # their --modality values
COMPRESSION_OF_MODE = {"stack": "stack", "avg-pooling": "avgpool"}  # their --compression-mode values

# The LLMs their train.py accepts, by (hidden size, layers, width of v_proj's output): models/lightning.py
# (llm_size, and the GQA widths hidden/4, hidden/3, hidden/8 of lora_up_V), layer counts from the
# models' published configurations.
KNOWN_LLMS = {
    (2048, 22, 256): "TinyLlama/TinyLlama_v1.1",
    (2048, 16, 512): "meta-llama/Llama-3.2-1B",
    (3072, 28, 1024): "meta-llama/Llama-3.2-3B",
    (4096, 32, 1024): "meta-llama/Meta-Llama-3-8B or meta-llama/Meta-Llama-3.1-8B",
    (4096, 32, 4096): "meta-llama/Llama-2-7b-hf",
    (5120, 40, 5120): "meta-llama/Llama-2-13b-hf",
}

_PROJECTOR_KEY = re.compile(r"^(audio|video)_proj\.(\d+)\.(weight|bias)$")
_LLM_LORA_KEY = re.compile(r"^llm\.model\.layers\.(\d+)\.self_attn\.lora_(down|up)_([QKVO])\.weight$")
_AVHUBERT_LORA_KEY = re.compile(
    r"^video_encoder\.encoder\.layers\.(\d+)\.self_attn\.lora_(down|up)_([QKVO])\.weight$"
)
_LIGHTNING_PREFIX = "model."
EMBED_KEY, LM_HEAD_KEY = "llm.model.embed_tokens.weight", "llm.lm_head.weight"
BASE_WEIGHT_KEY = "llm.model.layers.0.self_attn.q_proj.weight"  # compared with the --llm folder's
WHISPER_WIDTH_KEY = "audio_encoder.layer_norm.weight"
AVHUBERT_WIDTH_KEY = "video_encoder.encoder.layer_norm.weight"


class ImportRefusedError(ValueError):
    """The checkpoint cannot be, or does not fit, the requested experiment."""


@dataclass
class SourceCheckpoint:
    path: Path
    state: dict[str, torch.Tensor]  # keys relative to their AVSR_LLMs module
    container: str  # "state dict" or "lightning"
    hyper_parameters: dict[str, Any] | None  # a Lightning checkpoint's command-line arguments


def read_checkpoint(path: str | Path) -> SourceCheckpoint:
    """Load a released ``.pth`` or a Lightning ``.ckpt`` with torch's weights-only unpickler.

    No global beyond torch's allowlist is admitted: a released file is a dict of tensors, and Lightning
    stores the hyper-parameters as a plain dict (it converts the argparse Namespace with ``vars``).
    The file is memory-mapped, so only the tensors that are read leave the disk.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise ImportRefusedError(f"{path}: not a torch zip checkpoint (torch.save with torch >= 1.6)")
    foreign = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if foreign:
        raise ImportRefusedError(
            f"{path}: refused to unpickle {', '.join(sorted(foreign))}: a Llama-AVSR checkpoint holds only "
            "tensors and plain data; nothing was unpickled"
        )
    raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(raw, Mapping):
        raise ImportRefusedError(f"{path}: holds a {type(raw).__name__}, not a state dict")
    container, hyper_parameters = "state dict", None
    if isinstance(raw.get("state_dict"), Mapping):
        container, hyper_parameters, raw = "lightning", raw.get("hyper_parameters"), raw["state_dict"]
    state = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith(_LIGHTNING_PREFIX) for k in state):
        state = {k[len(_LIGHTNING_PREFIX) :]: v for k, v in state.items()}
    return SourceCheckpoint(path, state, container, dict(hyper_parameters) if hyper_parameters else None)


@dataclass(frozen=True)
class LoraShape:
    rank: int
    layers: int
    projections: tuple[str, ...]  # our module names, e.g. ("q_proj", "v_proj")
    in_features: dict[str, int]
    out_features: dict[str, int]


@dataclass(frozen=True)
class InferredConfig:
    """What the keys and shapes of a checkpoint say about the model that wrote it."""

    modalities: tuple[str, ...]  # in our input order
    projector_inputs: dict[str, int]
    projector_hidden: int
    projector_layernorm: bool
    llm_hidden: int
    llm_lora: LoraShape
    encoder_widths: dict[str, int]  # only where the file holds the encoder
    audio_encoder: str | None  # family of the stored audio encoder; None when not stored
    # "stack" or "avgpool" when an encoder width is known (else None: the params decide), and the rate
    # each stacking projector implies.
    compression: str | None
    stacking_rates: dict[str, int]
    embedding_rows: int | None
    video_encoder_lora: LoraShape | None
    llm_guess: str = ""  # the model their code lists with these shapes

    def summary(self) -> str:
        lora = self.llm_lora
        lines = [
            f"modalities: {', '.join(self.modalities)}",
            f"projector: input {self.projector_inputs}, hidden {self.projector_hidden}, "
            f"LayerNorm {'on' if self.projector_layernorm else 'off'}",
            f"compression: {self.compression or 'not in the shapes (no encoder weights): from the params'}"
            + (f", stacking rates {self.stacking_rates}" if self.stacking_rates else ""),
            f"encoder widths: {self.encoder_widths or 'not stored'}"
            + (f" (audio encoder: {self.audio_encoder})" if self.audio_encoder else ""),
            f"LLM: hidden {self.llm_hidden}, {lora.layers} layers, v_proj width "
            f"{lora.out_features.get('v_proj', '?')}: {self.llm_guess or 'not a model their code lists'}",
            f"LLM LoRA: rank {lora.rank} on {', '.join(lora.projections)}",
            f"LLM input table: {self.embedding_rows} rows, the appended special-token rows carried over"
            if self.embedding_rows
            else "LLM input table: not stored, so the special tokens keep this pipeline's own random rows",
            "AV-HuBERT LoRA: "
            + (
                f"rank {self.video_encoder_lora.rank} on {', '.join(self.video_encoder_lora.projections)} "
                f"of {self.video_encoder_lora.layers} layers, scaling {AVHUBERT_LORA_SCALING:g}"
                if self.video_encoder_lora
                else "none"
            ),
        ]
        return "\n".join(lines)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _lora_shape(
    state: Mapping[str, torch.Tensor], pattern: re.Pattern[str], path: Path
) -> tuple[LoraShape | None, dict[tuple[int, str, str], str]]:
    """The rank, layers and adapted projections of one family of hand-written LoRA keys, and the keys by
    (layer, direction, letter)."""
    keys = {(int(m[1]), m[2], m[3]): k for k in state if (m := pattern.match(k))}
    if not keys:
        return None, {}
    layers = sorted({layer for layer, _, _ in keys})
    letters = sorted({letter for _, _, letter in keys}, key="QKVO".index)
    wanted = {
        (layer, d, letter) for layer in range(layers[-1] + 1) for d in ("down", "up") for letter in letters
    }
    if missing := sorted(wanted - set(keys)):
        layer, direction, letter = missing[0]
        raise ImportRefusedError(
            f"{path}: LoRA on {', '.join(letters)} in layers {layers[0]}..{layers[-1]}, but no "
            f"layer {layer} lora_{direction}_{letter} ({len(missing)} such keys missing)"
        )
    first = keys[(0, "down", letters[0])]
    rank = state[first].shape[0]
    in_features, out_features = {}, {}
    for (_, direction, letter), key in keys.items():
        shape = _shape(state[key])
        axis_rank = 0 if direction == "down" else 1
        if len(shape) != 2 or shape[axis_rank] != rank:
            raise ImportRefusedError(
                f"{path}: {key} has shape {shape}, but {first} {_shape(state[first])} gives rank {rank}; "
                "one rank for every adapter is expected"
            )
        width = shape[1 - axis_rank]
        widths = in_features if direction == "down" else out_features
        if widths.setdefault(LORA_PROJECTIONS[letter], width) != width:
            raise ImportRefusedError(f"{path}: {key} has shape {shape}, other layers' {letter} differ")
    shape = LoraShape(
        rank, len(layers), tuple(LORA_PROJECTIONS[x] for x in letters), in_features, out_features
    )
    return shape, keys


def _audio_encoder_family(state: Mapping[str, torch.Tensor]) -> str | None:
    if "audio_encoder.conv1.weight" in state:
        return "whisper"
    if any(k.startswith("audio_encoder.feature_extractor_audio.") for k in state):
        return "av-hubert"
    if any(k.startswith("audio_encoder.feature_extractor.") for k in state):
        return "wavlm"
    return "unknown" if any(k.startswith("audio_encoder.") for k in state) else None


def infer_config(source: SourceCheckpoint) -> InferredConfig:
    """Read the configuration from the keys and shapes, refusing layouts this project has no model for."""
    state, path = source.state, source.path
    unsupported = sorted(
        {k.split(".")[0] for k in state if k.startswith(("audiovisual_encoder.", "audiovisual_proj."))}
    )
    if unsupported:
        raise ImportRefusedError(
            f"{path}: holds {', '.join(unsupported)}.*, the authors' audiovisual_avhubert mode (AV-HuBERT "
            "encodes the audio too); this project encodes audio with Whisper only"
        )
    projector_keys: dict[str, dict[int, dict[str, str]]] = {}
    for key in state:
        if m := _PROJECTOR_KEY.match(key):
            projector_keys.setdefault(m[1], {}).setdefault(int(m[2]), {})[m[3]] = key
    if not projector_keys:
        raise ImportRefusedError(
            f"{path}: no audio_proj.* or video_proj.* tensors: not a Llama-AVSR checkpoint"
        )
    modalities = tuple(m for m in ("audio", "video") if m in projector_keys)
    inputs, hiddens, outputs, layernorms = {}, set(), set(), set()
    for m in modalities:
        layers = projector_keys[m]
        if set(layers) not in ({0, 2}, {0, 2, 3}) or any(
            set(p) != {"weight", "bias"} for p in layers.values()
        ):
            raise ImportRefusedError(
                f"{path}: {m}_proj holds {sorted(k for p in layers.values() for k in p.values())}; expected "
                f"{m}_proj.0, .2 (and .3 with the LayerNorm), each a weight and a bias"
            )
        first, second = state[f"{m}_proj.0.weight"], state[f"{m}_proj.2.weight"]
        if second.shape[1] != first.shape[0]:
            raise ImportRefusedError(
                f"{path}: {m}_proj.2.weight {_shape(second)} does not follow "
                f"{m}_proj.0.weight {_shape(first)}"
            )
        inputs[m] = first.shape[1]
        hiddens.add(first.shape[0])
        outputs.add(second.shape[0])
        layernorms.add(3 in layers)
    if len(hiddens) > 1 or len(outputs) > 1 or len(layernorms) > 1:
        raise ImportRefusedError(
            f"{path}: audio_proj and video_proj differ in hidden width, output width or LayerNorm "
            f"({'; '.join(_projector_input(state, m) for m in modalities)}); "
            "this project builds both alike"
        )
    llm_lora, _ = _lora_shape(state, _LLM_LORA_KEY, path)
    if llm_lora is None:
        raise ImportRefusedError(
            f"{path}: no llm.model.layers.N.self_attn.lora_down_Q.weight: a model trained without LLM LoRA "
            "(--add_PETF_LLM lora) has no counterpart here"
        )
    llm_hidden = llm_lora.in_features[llm_lora.projections[0]]
    (projector_out,) = outputs
    if projector_out != llm_hidden:
        raise ImportRefusedError(
            f"{path}: {modalities[0]}_proj.2.weight {_shape(state[f'{modalities[0]}_proj.2.weight'])} writes "
            f"{projector_out}-wide tokens, but the LoRA adapters read {llm_hidden} "
            f"({_lora_key(llm_lora.projections[0], 'down')})"
        )
    audio_encoder = _audio_encoder_family(state)
    widths = {}
    if WHISPER_WIDTH_KEY in state and audio_encoder == "whisper":
        widths["audio"] = state[WHISPER_WIDTH_KEY].shape[0]
    if AVHUBERT_WIDTH_KEY in state:
        widths["video"] = state[AVHUBERT_WIDTH_KEY].shape[0]
    modes, stacking_rates = set(), {}
    for m in modalities:
        if m not in widths:
            continue
        rate, remainder = divmod(inputs[m], widths[m])
        if remainder or not rate:
            raise ImportRefusedError(
                f"{path}: {m}_proj.0.weight {_shape(state[f'{m}_proj.0.weight'])} reads {inputs[m]} inputs, "
                f"not a multiple of the {m} encoder's width {widths[m]}"
            )
        if rate > 1:
            modes.add("stack")
            stacking_rates[m] = rate
        else:
            modes.add("avgpool")
    if len(modes) > 1:
        raise ImportRefusedError(
            f"{path}: one projector stacks frames and the other does not ({inputs}, {widths})"
        )
    video_lora, _ = _lora_shape(state, _AVHUBERT_LORA_KEY, path)
    if video_lora and "video" in widths and set(video_lora.in_features.values()) != {widths["video"]}:
        raise ImportRefusedError(
            f"{path}: AV-HuBERT LoRA reads {video_lora.in_features}, but {AVHUBERT_WIDTH_KEY} "
            f"{_shape(state[AVHUBERT_WIDTH_KEY])} gives the encoder width {widths['video']}"
        )
    rows = state[EMBED_KEY].shape[0] if EMBED_KEY in state else None
    llm_key = (llm_hidden, llm_lora.layers, llm_lora.out_features.get("v_proj", -1))
    return InferredConfig(
        modalities=modalities,
        projector_inputs=inputs,
        projector_hidden=hiddens.pop(),
        projector_layernorm=layernorms.pop(),
        llm_hidden=llm_hidden,
        llm_lora=llm_lora,
        encoder_widths=widths,
        audio_encoder=audio_encoder,
        compression=modes.pop() if modes else None,
        stacking_rates=stacking_rates,
        embedding_rows=rows,
        video_encoder_lora=video_lora,
        llm_guess=KNOWN_LLMS.get(llm_key, ""),
    )


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


def _experiment_conflicts(
    source: SourceCheckpoint, inferred: InferredConfig, params: Mapping[str, Any], experiment: Experiment
) -> list[str]:
    """Where the projectors (and a Lightning checkpoint's arguments) contradict the experiment."""
    state, found = source.state, []
    rates = {"audio": experiment.audio_rate, "video": experiment.video_rate}
    for m in sorted(set(experiment.modalities) - set(inferred.modalities)):
        found.append(
            f"{experiment.name} reads {m} features, but there is no {m}_proj.0.weight (the checkpoint has "
            f"{', '.join(f'{x}_proj' for x in inferred.modalities)})"
        )
    for m in sorted(set(inferred.modalities) - set(experiment.modalities)):
        found.append(f"{_projector_input(state, m)}: {experiment.name} has no {m} input")
    compression = inferred.compression or params["model"]["compression"]
    for m in set(experiment.modalities) & set(inferred.modalities):
        d_in = inferred.projector_inputs[m]
        width = inferred.encoder_widths.get(m, d_in // rates[m])
        if compression == "stack" and d_in != width * rates[m]:
            found.append(
                f"{_projector_input(state, m)}, but stacking {rates[m]} frames ({m} rate of "
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


def _params_conflicts(
    source: SourceCheckpoint, inferred: InferredConfig, params: Mapping[str, Any], task: str
) -> list[str]:
    """Where the checkpoint contradicts the params' model section (which the record will carry)."""
    state, model, found = source.state, params["model"], []
    hp = source.hyper_parameters or {}
    if inferred.compression and inferred.compression != model["compression"]:
        m = next(m for m in inferred.modalities if m in inferred.encoder_widths)
        found.append(
            f"model.compression is {model['compression']}, but {_projector_input(state, m)} on a "
            f"{inferred.encoder_widths[m]}-wide encoder means {inferred.compression}"
        )
    mode = COMPRESSION_OF_MODE.get(hp.get("compression_mode"))
    if mode and mode != model["compression"]:
        found.append(f"model.compression is {model['compression']}, hyper_parameters.compression_mode {mode}")
    lora = inferred.llm_lora
    down = _lora_key(lora.projections[0], "down")
    for name, have, want, evidence in (
        ("projector_hidden", inferred.projector_hidden, model["projector_hidden"], _projector_input(state)),
        (
            "projector_layernorm",
            inferred.projector_layernorm,
            model["projector_layernorm"],
            "keys *_proj.3.*",
        ),
        ("lora_rank", lora.rank, model["lora_rank"], f"{down} {_shape(state[down])}"),
        ("lora_targets", sorted(lora.projections), sorted(model["lora_targets"]), "keys lora_down_X"),
    ):
        if have != want:
            found.append(f"model.{name} is {want}, the checkpoint has {have} ({evidence})")
    if "alpha" in hp and "reduction_lora" in hp:
        theirs, ours = hp["alpha"] / hp["reduction_lora"], model["lora_alpha"] / model["lora_rank"]
        if not math.isclose(theirs, ours):
            found.append(
                f"model.lora_alpha / model.lora_rank = {ours:g}, the checkpoint's LoRA scaling is "
                f"hyper_parameters alpha / reduction_lora = {hp['alpha']} / {hp['reduction_lora']} "
                f"= {theirs:g}"
            )
    prompt_arg = {"asr": "prompt_audio", "vsr": "prompt_video", "avsr": "prompt_audiovisual"}[task]
    if prompt_arg in hp and hp[prompt_arg] != model["prompts"][task]:
        found.append(
            f"model.prompts.{task} is {model['prompts'][task]!r}, "
            f"hyper_parameters.{prompt_arg} {hp[prompt_arg]!r}"
        )
    if params["model"]["match_embedding_norm"]:
        found.append(
            "model.match_embedding_norm must be false: the authors' model feeds its projector output as is"
        )
    if params["train"]["ctc_weight"]:
        found.append("train.ctc_weight must be 0: the authors' model has no CTC head")
    if params["train"]["warm_start"][task]:
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
            key = _lora_key(projection, direction)
            if _shape(state[key]) != expected:
                found.append(
                    f"{key} has shape {_shape(state[key])}, {llm_dir} "
                    f"({projection}: {want_in} -> {want_out}) needs {expected}"
                )
    if lora.layers != llm_config.num_hidden_layers:
        found.append(
            f"LoRA in {lora.layers} layers (llm.model.layers.N), {llm_dir} has {llm_config.num_hidden_layers}"
        )
    expected_rows = llm_config.vocab_size + len(AUTHORS_SPECIAL_TOKENS)
    if inferred.embedding_rows is not None and inferred.embedding_rows != expected_rows:
        found.append(
            f"{EMBED_KEY} has shape {_shape(state[EMBED_KEY])}, but {llm_dir}'s vocabulary of "
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
                f"{BASE_WEIGHT_KEY} {_shape(theirs)} differs from model.layers.0.self_attn.q_proj.weight "
                f"{_shape(reference)} of {llm_dir}: the checkpoint was trained on another base LLM"
            )
    return found


def _projector_input(state: Mapping[str, torch.Tensor], modality: str | None = None) -> str:
    """The first projector weight, as evidence in a message."""
    m = modality or next(x for x in ("audio", "video") if f"{x}_proj.0.weight" in state)
    return f"{m}_proj.0.weight has shape {_shape(state[f'{m}_proj.0.weight'])}"


def _lora_key(projection: str, direction: str) -> str:
    """Their key of the first layer's adapter on ``projection`` (e.g. q_proj), as evidence in a message."""
    return f"llm.model.layers.0.self_attn.lora_{direction}_{projection[0].upper()}.weight"


def _our_tensors(source: SourceCheckpoint, inferred: InferredConfig) -> dict[str, torch.Tensor]:
    """Projectors and LLM LoRA under the names of ``AVSRModel.trainable_state_dict()``, in float32."""
    state, out = source.state, {}
    for m in inferred.modalities:
        for j in (0, 2, 3) if inferred.projector_layernorm else (0, 2):
            for kind in ("weight", "bias"):
                out[f"projectors.{m}.{j}.{kind}"] = state[f"{m}_proj.{j}.{kind}"]
    _, keys = _lora_shape(state, _LLM_LORA_KEY, source.path)
    for (layer, direction, letter), key in keys.items():
        out[_peft_lora_name("llm.base_model.model.model", layer, direction, letter)] = state[key]
    return {k: v.float().contiguous() for k, v in out.items()}


def _video_encoder_lora_tensors(source: SourceCheckpoint) -> dict[str, torch.Tensor]:
    """AV-HuBERT adapters under our port's names after ``add_lora`` (peft, adapter "default")."""
    _, keys = _lora_shape(source.state, _AVHUBERT_LORA_KEY, source.path)
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
    source: SourceCheckpoint,
    out_dir: str | Path,
    params: Mapping[str, Any],
    experiment: Experiment,
    llm_dir: Path,
) -> InferredConfig:
    """Write ``out_dir`` as the checkpoint of ``experiment`` under ``params``, refusing any contradiction.

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
        params["llm"]["hub_id"],
        otherwise="put the Hugging Face folder of the LLM the checkpoint was trained on there "
        f"({inferred.llm_guess or f'hidden size {inferred.llm_hidden}'})",
    )
    llm_config = AutoConfig.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False)
    conflicts = [
        *_experiment_conflicts(source, inferred, params, experiment),
        *_params_conflicts(source, inferred, params, experiment.task),
        *_llm_conflicts(source, inferred, llm_dir, llm_config),
    ]
    if conflicts:
        raise ImportRefusedError(
            f"{source.path}: does not fit {experiment.name} under these params:\n  " + "\n  ".join(conflicts)
        )
    tensors = _our_tensors(source, inferred)
    special_rows = _special_token_rows(source, llm_config)
    video_lora = inferred.video_encoder_lora
    record = {
        **resolve_run(params, experiment).train_record(),
        "imported_from": {
            "path": str(source.path.resolve()),
            "sha256": sha256_file(source.path),
            "container": source.container,
            "inferred": asdict(inferred),
            "lora_scaling": {
                "value": params["model"]["lora_alpha"] / params["model"]["lora_rank"],
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
