"""Read a checkpoint released by the Llama-AVSR authors and infer the configuration of the model behind it.

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
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Appended to the tokenizer by models/lightning.py in one add_special_tokens call, so they take the
# ids after the base vocabulary in this order.
AUTHORS_SPECIAL_TOKENS = ("<pad>", "<audio>", "</audio>", "<video>", "</video>")
AVHUBERT_LORA_SCALING = 2.0  # modeling_AVSRLLM.py sets self_attn.scaling_lora = 2 on every layer
LORA_PROJECTIONS = {"Q": "q_proj", "K": "k_proj", "V": "v_proj", "O": "o_proj"}

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
LLM_LORA_KEY = re.compile(r"^llm\.model\.layers\.(\d+)\.self_attn\.lora_(down|up)_([QKVO])\.weight$")
AVHUBERT_LORA_KEY = re.compile(
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


def shape_of(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def lora_shape(
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
        shape = shape_of(state[key])
        axis_rank = 0 if direction == "down" else 1
        if len(shape) != 2 or shape[axis_rank] != rank:
            raise ImportRefusedError(
                f"{path}: {key} has shape {shape}, but {first} {shape_of(state[first])} gives rank {rank}; "
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


def projector_evidence(state: Mapping[str, torch.Tensor], modality: str | None = None) -> str:
    """The first projector weight, as evidence in a message."""
    m = modality or next(x for x in ("audio", "video") if f"{x}_proj.0.weight" in state)
    return f"{m}_proj.0.weight has shape {shape_of(state[f'{m}_proj.0.weight'])}"


def first_layer_lora_key(projection: str, direction: str) -> str:
    """Their key of the first layer's adapter on ``projection`` (e.g. q_proj), as evidence in a message."""
    return f"llm.model.layers.0.self_attn.lora_{direction}_{projection[0].upper()}.weight"


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
    _refuse_audiovisual_avhubert_mode(state, path)
    projectors = _projector_shapes(state, path)
    llm_lora, llm_hidden = _llm_lora(state, path, projectors)
    audio_encoder = _audio_encoder_family(state)
    widths = _encoder_widths(state, audio_encoder)
    compression, stacking_rates = _compression(state, path, projectors, widths)
    video_lora = _video_encoder_lora(state, path, widths)
    llm_key = (llm_hidden, llm_lora.layers, llm_lora.out_features.get("v_proj", -1))
    return InferredConfig(
        modalities=projectors.modalities,
        projector_inputs=projectors.inputs,
        projector_hidden=projectors.hidden,
        projector_layernorm=projectors.layernorm,
        llm_hidden=llm_hidden,
        llm_lora=llm_lora,
        encoder_widths=widths,
        audio_encoder=audio_encoder,
        compression=compression,
        stacking_rates=stacking_rates,
        embedding_rows=state[EMBED_KEY].shape[0] if EMBED_KEY in state else None,
        video_encoder_lora=video_lora,
        llm_guess=KNOWN_LLMS.get(llm_key, ""),
    )


def _refuse_audiovisual_avhubert_mode(state: Mapping[str, torch.Tensor], path: Path) -> None:
    unsupported = sorted(
        {k.split(".")[0] for k in state if k.startswith(("audiovisual_encoder.", "audiovisual_proj."))}
    )
    if unsupported:
        raise ImportRefusedError(
            f"{path}: holds {', '.join(unsupported)}.*, the authors' audiovisual_avhubert mode (AV-HuBERT "
            "encodes the audio too); this project encodes audio with Whisper only"
        )


@dataclass(frozen=True)
class _ProjectorShapes:
    modalities: tuple[str, ...]  # in our input order
    inputs: dict[str, int]
    hidden: int
    output: int
    layernorm: bool


def _projector_shapes(state: Mapping[str, torch.Tensor], path: Path) -> _ProjectorShapes:
    """The projectors' modalities and widths, which must be alike for both modalities."""
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
                f"{path}: {m}_proj.2.weight {shape_of(second)} does not follow "
                f"{m}_proj.0.weight {shape_of(first)}"
            )
        inputs[m] = first.shape[1]
        hiddens.add(first.shape[0])
        outputs.add(second.shape[0])
        layernorms.add(3 in layers)
    if len(hiddens) > 1 or len(outputs) > 1 or len(layernorms) > 1:
        raise ImportRefusedError(
            f"{path}: audio_proj and video_proj differ in hidden width, output width or LayerNorm "
            f"({'; '.join(projector_evidence(state, m) for m in modalities)}); "
            "this project builds both alike"
        )
    return _ProjectorShapes(modalities, inputs, hiddens.pop(), outputs.pop(), layernorms.pop())


def _llm_lora(
    state: Mapping[str, torch.Tensor], path: Path, projectors: _ProjectorShapes
) -> tuple[LoraShape, int]:
    """The LLM's LoRA and hidden size, which must be the width of the projectors' output tokens."""
    llm_lora, _ = lora_shape(state, LLM_LORA_KEY, path)
    if llm_lora is None:
        raise ImportRefusedError(
            f"{path}: no llm.model.layers.N.self_attn.lora_down_Q.weight: a model trained without LLM LoRA "
            "(--add_PETF_LLM lora) has no counterpart here"
        )
    llm_hidden = llm_lora.in_features[llm_lora.projections[0]]
    if projectors.output != llm_hidden:
        m = projectors.modalities[0]
        raise ImportRefusedError(
            f"{path}: {m}_proj.2.weight {shape_of(state[f'{m}_proj.2.weight'])} writes "
            f"{projectors.output}-wide tokens, but the LoRA adapters read {llm_hidden} "
            f"({first_layer_lora_key(llm_lora.projections[0], 'down')})"
        )
    return llm_lora, llm_hidden


def _encoder_widths(state: Mapping[str, torch.Tensor], audio_encoder: str | None) -> dict[str, int]:
    """The widths of the stored encoders (an audio encoder only when it is Whisper)."""
    widths = {}
    if WHISPER_WIDTH_KEY in state and audio_encoder == "whisper":
        widths["audio"] = state[WHISPER_WIDTH_KEY].shape[0]
    if AVHUBERT_WIDTH_KEY in state:
        widths["video"] = state[AVHUBERT_WIDTH_KEY].shape[0]
    return widths


def _compression(
    state: Mapping[str, torch.Tensor], path: Path, projectors: _ProjectorShapes, widths: Mapping[str, int]
) -> tuple[str | None, dict[str, int]]:
    """``stack`` or ``avgpool`` from how many encoder widths each projector reads (None when no encoder is
    stored), and the rate each stacking projector implies."""
    inputs, modes, stacking_rates = projectors.inputs, set(), {}
    for m in projectors.modalities:
        if m not in widths:
            continue
        rate, remainder = divmod(inputs[m], widths[m])
        if remainder or not rate:
            raise ImportRefusedError(
                f"{path}: {m}_proj.0.weight {shape_of(state[f'{m}_proj.0.weight'])} reads {inputs[m]} "
                f"inputs, not a multiple of the {m} encoder's width {widths[m]}"
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
    return (modes.pop() if modes else None), stacking_rates


def _video_encoder_lora(
    state: Mapping[str, torch.Tensor], path: Path, widths: Mapping[str, int]
) -> LoraShape | None:
    """AV-HuBERT's LoRA, which must read the stored encoder's width."""
    video_lora, _ = lora_shape(state, AVHUBERT_LORA_KEY, path)
    if video_lora and "video" in widths and set(video_lora.in_features.values()) != {widths["video"]}:
        raise ImportRefusedError(
            f"{path}: AV-HuBERT LoRA reads {video_lora.in_features}, but {AVHUBERT_WIDTH_KEY} "
            f"{shape_of(state[AVHUBERT_WIDTH_KEY])} gives the encoder width {widths['video']}"
        )
    return video_lora
