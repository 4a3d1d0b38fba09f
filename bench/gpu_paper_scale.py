"""Training-step time, memory and MFU of AVSRModel at the paper's model sizes on one GPU.

Usage:
    python bench/gpu_paper_scale.py [--llm 1b,3b] [--tasks asr,vsr,avsr] [--steps 10] [--warmup 3]
        [--seconds 6] [--out results/bench/gpu_paper_scale.json] [--smoke]

Randomly initialised models of the real sizes, built directly on the GPU (no weights read, no CPU RAM
spent on them): Llama-3.2-1B or -3B (LoRA on q and v), Whisper-medium.en's encoder and AV-HuBERT Large
(the defaults of ``avsr_sinks.encoders.avhubert.AVHubertConfig``), both frozen and run online under
no_grad (the pipeline trains on their cached outputs, so AV-HuBERT gets none of the paper's VSR LoRA).
The recipe (projector, LoRA scaling, frame budget, optimiser, attention implementation) is params.yaml
with configs/paper.yaml over it; each step runs forward under bf16 autocast with fp32 weights
(accelerate's mixed precision), backward, gradient clipping and AdamW. ``--smoke`` shrinks every model
and input and runs in fp32 on the CPU, so that tests exercise every code path.

Workload assumptions (all in the JSON): every utterance lasts ``--seconds`` (6 s by default, a typical
LRS3 clip; not a measured median). Whisper encodes its fixed 30 s window (1500 frames, 3000 log-mel
rows) and the LLM gets the 50 frames/s that cover the speech, as Llama-AVSR and
``AudioEncoder.encode`` cut them; AV-HuBERT encodes 25 frames/s of 88 x 88 crops. The transcript has 4
Llama-3 tokens per second (about 3 words/s of TED speech, 1.3 tokens a word). Batches fill
``train.max_frames`` video frames the way ``FrameBudgetBatchSampler`` does (longest clip x batch size),
so equal clips give ``max_frames // frames`` utterances. Inputs are random tensors already on the GPU:
log-mel extraction, video decoding and data loading are not timed.

FLOPs per training step, counted analytically (``step_flops``); one multiply-add is 2 FLOPs, a matmul
of (m x k) by (k x n) 2mkn. Forward: every matmul and convolution of the encoders, projectors and LLM
(LM head included, at the positions that predict a label: transcript + EOS, as ``AVSRModel.forward``
computes it), and attention's two L x L products per layer counted in full (4 L^2
x query width per sample), as PaLM's MFU does, although a causal kernel may skip half. Backward: the
frozen LLM weights need only activation gradients (1x their forward); LoRA, the projectors' second
layer and the attention products need both operands' gradients (2x); the projectors' first layer needs
only its weight gradient (its input, the frozen encoders' output, needs none); the encoders have no
backward. So the usual 6 x parameters x tokens overstates the frozen LLM's work by half (it is 4 x
parameters x tokens). Norms, softmax and element-wise operations are left out. The first warm-up step
also runs under torch's FlopCounterMode, which counts the matmuls and convolutions that actually ran;
the JSON keeps both counts.

MFU = analytic FLOPs / median step time / peak, against the peak measured by a large bf16 matmul in the
same run and, for a card known by name, the datasheet's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avsr_sinks.encoders.avhubert import FRAME_RATE as VIDEO_FPS
from avsr_sinks.encoders.avhubert import RESNET_WIDTHS, AVHubertConfig, AVHubertModel
from avsr_sinks.io import git_commit, write_json_atomic, write_text_atomic
from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.llm import SPECIAL_TOKENS
from avsr_sinks.settings.config import load_params

log = logging.getLogger("gpu_paper_scale")

REPO = Path(__file__).resolve().parents[1]
AUDIO_FPS = 50  # Whisper encoder frames per second
TRANSCRIPT_TOKENS_PER_SECOND = 4
TASK_RATES = {"asr": {"audio": 4}, "vsr": {"video": 2}, "avsr": {"audio": 4, "video": 2}}
LLAMA3_VOCAB = 128_256
# Dense bf16 tensor-core peaks from NVIDIA's datasheets, by a piece of torch.cuda.get_device_name().
DATASHEET_BF16_PEAKS = (
    ("H200", 989e12),
    ("H100 80GB HBM3", 989e12),  # the SXM card's name
    ("H100 SXM", 989e12),
    ("H100 PCIe", 756e12),
    ("A100", 312e12),
)


@dataclass(frozen=True)
class LlamaShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class Scale:
    """Model sizes and inputs: the paper's on a GPU, or tiny ones on the CPU (--smoke)."""

    llms: Mapping[str, LlamaShape]
    vocab: int  # before the added special tokens
    whisper: WhisperConfig
    avhubert: AVHubertConfig
    frame_size: int  # video crop side in pixels
    seconds: float  # default utterance length
    max_frames: int | None  # batch budget in video frames; None: the recipe's train.max_frames
    matmul_size: int  # side of the square matmul that measures the peak
    device: str
    autocast: bool  # bf16 autocast with fp32 weights, as accelerate's mixed precision


LLAMA_32 = {
    "1b": LlamaShape(layers=16, hidden=2048, heads=32, kv_heads=8, intermediate=8192),
    "3b": LlamaShape(layers=28, hidden=3072, heads=24, kv_heads=8, intermediate=8192),
}
PAPER = Scale(
    llms=LLAMA_32,
    vocab=LLAMA3_VOCAB,
    # openai/whisper-medium.en's encoder; the decoder fields do not matter to WhisperEncoder.
    whisper=WhisperConfig(
        d_model=1024,
        encoder_layers=24,
        encoder_attention_heads=16,
        encoder_ffn_dim=4096,
        num_mel_bins=80,
        max_source_positions=1500,
    ),
    avhubert=AVHubertConfig(),
    frame_size=88,
    seconds=6.0,
    max_frames=None,
    matmul_size=8192,
    device="cuda",
    autocast=True,
)
SMOKE = Scale(
    llms={
        "1b": LlamaShape(layers=2, hidden=32, heads=4, kv_heads=2, intermediate=64),
        "3b": LlamaShape(layers=3, hidden=48, heads=4, kv_heads=2, intermediate=96),
    },
    vocab=256,
    whisper=WhisperConfig(
        d_model=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        num_mel_bins=80,
        max_source_positions=100,
    ),
    avhubert=AVHubertConfig(
        encoder_embed_dim=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_embed_dim=32,
        conv_pos=8,
        conv_pos_groups=4,
    ),
    frame_size=16,
    seconds=1.0,
    max_frames=50,
    matmul_size=1024,
    device="cpu",
    autocast=False,
)


@dataclass(frozen=True)
class Recipe:
    """The paper-scale settings the step depends on (params.yaml with configs/paper.yaml over it)."""

    compression: str
    projector_hidden: int
    projector_layernorm: bool
    lora_rank: int
    lora_alpha: float
    lora_targets: tuple[str, ...]
    attn_implementation: str
    prompts: Mapping[str, str]
    lr: Mapping[str, float]
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    max_frames: int

    def lora_for(self, shape: LlamaShape) -> tuple[int, float]:
        """Rank hidden / 32 at the paper's scaling alpha / rank (configs/paper.yaml: 96 and 12 for the 3B)."""
        rank = max(shape.hidden // 32, 1)
        return rank, rank * self.lora_alpha / self.lora_rank


def read_recipe(repo: Path = REPO) -> Recipe:
    """params.yaml with configs/paper.yaml over it, merged and validated by the pipeline's own loader."""
    params = load_params([repo / "params.yaml", repo / "configs" / "paper.yaml"])
    m, t = params["model"], params["train"]
    return Recipe(
        compression=m["compression"],
        projector_hidden=m["projector_hidden"],
        projector_layernorm=m["projector_layernorm"],
        lora_rank=m["lora_rank"],
        lora_alpha=m["lora_alpha"],
        lora_targets=tuple(m["lora_targets"]),
        attn_implementation=m["attn_implementation"],
        prompts=m["prompts"],
        lr=t["lr"],
        betas=tuple(t["betas"]),
        weight_decay=t["weight_decay"],
        grad_clip=t["grad_clip"],
        max_frames=t["max_frames"],
    )


@dataclass(frozen=True)
class Workload:
    """One training batch of equal utterances."""

    task: str
    rates: Mapping[str, int]
    batch: int
    window_positions: int  # Whisper encoder positions of its fixed window
    frames: Mapping[str, int]  # encoder frames per utterance that reach the LLM, per modality
    frame_size: int
    prompt_tokens: int
    transcript_tokens: int

    def modality_tokens(self, modality: str) -> int:
        return math.ceil(self.frames[modality] / self.rates[modality])

    @property
    def llm_tokens(self) -> int:
        """BOS, each modality's tokens between its two delimiters, prompt, transcript, EOS."""
        blocks = sum(2 + self.modality_tokens(m) for m in self.rates)
        return 1 + blocks + self.prompt_tokens + self.transcript_tokens + 1


def make_workload(task: str, scale: Scale, seconds: float, max_frames: int, prompt_tokens: int) -> Workload:
    """The batch ``task`` trains on when every utterance lasts ``seconds`` (see the module docstring)."""
    video_frames = round(seconds * VIDEO_FPS)
    batch = max_frames // video_frames
    if batch < 1:
        raise ValueError(
            f"--seconds {seconds} gives {video_frames} video frames, over the budget {max_frames}"
        )
    frames = {"audio": math.ceil(seconds * AUDIO_FPS), "video": video_frames}
    if frames["audio"] > scale.whisper.max_source_positions:
        raise ValueError(
            f"--seconds {seconds} is longer than Whisper's window of "
            f"{scale.whisper.max_source_positions / AUDIO_FPS} s"
        )
    return Workload(
        task=task,
        rates=TASK_RATES[task],
        batch=batch,
        window_positions=scale.whisper.max_source_positions,
        frames={m: frames[m] for m in TASK_RATES[task]},
        frame_size=scale.frame_size,
        prompt_tokens=prompt_tokens,
        transcript_tokens=math.ceil(seconds * TRANSCRIPT_TOKENS_PER_SECOND),
    )


# ----- FLOP counting ------------------------------------------------------------------------------------
def _matmul(rows: int, d_in: int, d_out: int) -> int:
    return 2 * rows * d_in * d_out


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def transformer_encoder_flops(batch: int, length: int, width: int, ffn: int, layers: int) -> int:
    """Forward of ``layers`` bidirectional layers (q, k, v, out projections, two-layer MLP)."""
    rows = batch * length
    per_layer = 4 * _matmul(rows, width, width) + 2 * _matmul(rows, width, ffn)
    return layers * (per_layer + batch * 4 * length * length * width)


def whisper_encoder_flops(cfg: WhisperConfig, batch: int) -> int:
    """Two convolutions (kernel 3, the second of stride 2) over the window's 2P mel rows, then the layers."""
    positions, width = cfg.max_source_positions, cfg.d_model
    convs = 2 * batch * (2 * positions * cfg.num_mel_bins + positions * width) * 3 * width
    layers = transformer_encoder_flops(batch, positions, width, cfg.encoder_ffn_dim, cfg.encoder_layers)
    return convs + layers


def resnet_frame_flops(side: int) -> int:
    """AV-HuBERT's front end on one side x side frame: the 3-D stem (5 x 7 x 7, stride 2 in space),
    a stride-2 max pool, then ResNet-18's four stages of two basic blocks (3 x 3 convolutions, a 1 x 1
    projection where the shape changes)."""
    stem = RESNET_WIDTHS[0]
    side = _conv_out(side, 7, 2, 3)
    flops = 2 * side * side * 5 * 7 * 7 * stem
    side = _conv_out(side, 3, 2, 1)
    channels = stem
    for stage, width in enumerate(RESNET_WIDTHS):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            out = _conv_out(side, 3, stride, 1)
            flops += 2 * out * out * 9 * (channels * width + width * width)
            if stride != 1 or channels != width:
                flops += 2 * out * out * channels * width
            side, channels = out, width
    return flops


def avhubert_video_flops(cfg: AVHubertConfig, batch: int, frames: int, side: int) -> int:
    """Video-only forward: front end, its 512 -> D projection, the fusion projection 2D -> D, the
    grouped positional convolution (an even kernel yields one extra frame, then cut) and the layers."""
    width, rows = cfg.encoder_embed_dim, batch * frames
    front = rows * resnet_frame_flops(side) + _matmul(rows, RESNET_WIDTHS[-1], width)
    fusion = _matmul(rows, 2 * width, width)
    pos_frames = _conv_out(frames, cfg.conv_pos, 1, cfg.conv_pos // 2)
    pos_conv = 2 * batch * pos_frames * width * (width // cfg.conv_pos_groups) * cfg.conv_pos
    layers = transformer_encoder_flops(batch, frames, width, cfg.encoder_ffn_embed_dim, cfg.encoder_layers)
    return front + fusion + pos_conv + layers


def step_flops(
    work: Workload,
    llm: LlamaShape,
    vocab: int,
    lora_rank: int,
    projector_hidden: int,
    compression: str,
    whisper: WhisperConfig,
    avhubert: AVHubertConfig,
) -> dict[str, int]:
    """FLOPs of one training step, by part (see the module docstring for what each factor means)."""
    b, length = work.batch, work.llm_tokens
    rows, q_width, kv_width = b * length, llm.hidden, llm.kv_heads * llm.head_dim
    frozen = llm.layers * (
        _matmul(rows, llm.hidden, q_width)
        + 2 * _matmul(rows, llm.hidden, kv_width)
        + _matmul(rows, q_width, llm.hidden)
        + 3 * _matmul(rows, llm.hidden, llm.intermediate)
    ) + _matmul(b * (work.transcript_tokens + 1), llm.hidden, vocab)
    attention = llm.layers * b * 4 * length * length * q_width
    lora = llm.layers * sum(
        _matmul(rows, llm.hidden, lora_rank) + _matmul(rows, lora_rank, width)
        for width in (q_width, kv_width)
    )
    encoder_widths = {"audio": whisper.d_model, "video": avhubert.encoder_embed_dim}
    projectors = 0
    for modality, rate in work.rates.items():
        tokens = b * work.modality_tokens(modality)
        d_in = encoder_widths[modality] * (rate if compression == "stack" else 1)
        projectors += 2 * _matmul(tokens, d_in, projector_hidden) + 3 * _matmul(
            tokens, projector_hidden, llm.hidden
        )
    parts = {
        "audio_encoder_forward": whisper_encoder_flops(whisper, b) if "audio" in work.rates else 0,
        "video_encoder_forward": (
            avhubert_video_flops(avhubert, b, work.frames["video"], work.frame_size)
            if "video" in work.rates
            else 0
        ),
        "projectors": projectors,
        "llm_frozen_matmuls": 2 * frozen,
        "llm_attention": 3 * attention,
        "llm_lora": 3 * lora,
    }
    return {**parts, "total": sum(parts.values())}


def _attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# Torch's counter knows the GPU attention kernels, not the CPU one (--smoke), which computes the same.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward_flops,
}


# ----- models and inputs --------------------------------------------------------------------------------
def make_tokenizer(vocab: int, prompts: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of ``vocab`` entries (the prompts' words, fillers ``w<i>``, Llama 3's BOS and
    EOS), then Llama-AVSR's pad and delimiters added as ``load_llm`` adds them to Llama 3.2's."""
    words = sorted({w for p in prompts for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(p)})
    entries = ["<unk>", *words]
    entries += [f"w{i}" for i in range(vocab - len(entries) - 2)]
    entries += ["<|begin_of_text|>", "<|end_of_text|>"]
    model = models.WordLevel({token: i for i, token in enumerate(entries)}, unk_token="<unk>")
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    )
    delimiters = [t for m in ("audio", "video") for t in SPECIAL_TOKENS[m]]
    tokenizer.add_special_tokens(
        {"pad_token": SPECIAL_TOKENS["pad"], "additional_special_tokens": delimiters}
    )
    return tokenizer


def llama_config(shape: LlamaShape, vocab: int, attn_implementation: str) -> LlamaConfig:
    """Llama 3.2's hyper-parameters (tied embeddings, rope theta 500000 with llama3 scaling)."""
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=131_072,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
        attn_implementation=attn_implementation,
    )


@dataclass
class Encoders:
    whisper: WhisperEncoder | None
    avhubert: AVHubertModel | None


def build_encoders(scale: Scale, tasks: Sequence[str]) -> Encoders:
    """The frozen encoders the tasks need, built and initialised on the device itself."""
    modalities = {m for task in tasks for m in TASK_RATES[task]}
    with torch.device(scale.device):
        whisper = WhisperEncoder(scale.whisper) if "audio" in modalities else None
        avhubert = AVHubertModel(scale.avhubert) if "video" in modalities else None
    for encoder in (whisper, avhubert):
        if encoder is not None:
            encoder.eval().requires_grad_(False)
    return Encoders(whisper, avhubert)


def make_inputs(work: Workload, scale: Scale) -> dict[str, torch.Tensor]:
    """Random encoder inputs of the real shapes, made once on the device, outside the timed steps."""
    b, side, device = work.batch, work.frame_size, scale.device
    inputs = {}
    if "audio" in work.rates:  # log-mel rows of Whisper's whole window: (B, mel bins, 2P)
        inputs["audio"] = torch.randn(b, scale.whisper.num_mel_bins, 2 * work.window_positions, device=device)
    if "video" in work.rates:  # grey mouth crops: (B, 1, T, H, W)
        inputs["video"] = torch.randn(b, 1, work.frames["video"], side, side, device=device)
    return inputs


def encode(
    encoders: Encoders, inputs: Mapping[str, torch.Tensor], work: Workload
) -> list[dict[str, torch.Tensor]]:
    """Per-utterance frames of the frozen encoders, as the LLM receives them."""
    features: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if "audio" in inputs:
            hidden = encoders.whisper(inputs["audio"]).last_hidden_state  # (B, P, D)
            features["audio"] = hidden[:, : work.frames["audio"]]  # the frames that cover the speech
        if "video" in inputs:
            features["video"], _ = encoders.avhubert(video=inputs["video"])  # (B, T, D)
    return [{m: f[b] for m, f in features.items()} for b in range(work.batch)]


# ----- measurement --------------------------------------------------------------------------------------
def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_matmul_peak(scale: Scale, repeats: int = 10) -> float:
    """FLOP/s of the fastest of ``repeats`` large square matmuls in the step's compute dtype (bf16 on the
    GPU, fp32 on the CPU); the fastest, so that a moment of contention does not lower the peak."""
    dtype = torch.bfloat16 if scale.autocast else torch.float32
    n = scale.matmul_size
    a, b = (torch.randn(n, n, device=scale.device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    fastest = math.inf
    for _ in range(repeats):
        _synchronize(scale.device)
        start = time.perf_counter()
        a @ b
        _synchronize(scale.device)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * n**3 / fastest


def datasheet_peak(device_name: str) -> float | None:
    return next((peak for piece, peak in DATASHEET_BF16_PEAKS if piece in device_name), None)


@dataclass
class StepTiming:
    encoders_s: float
    total_s: float
    llm_tokens: int


def training_step(
    model: AVSRModel,
    encoders: Encoders,
    inputs: Mapping[str, torch.Tensor],
    work: Workload,
    transcripts: list[str],
    optimizer: torch.optim.Optimizer,
    scale: Scale,
    grad_clip: float,
) -> StepTiming:
    """One optimisation step, synchronised at its start, after the encoders and at its end."""
    precision = (
        torch.autocast(scale.device, dtype=torch.bfloat16) if scale.autocast else contextlib.nullcontext()
    )
    _synchronize(scale.device)
    start = time.perf_counter()
    with precision:
        features = encode(encoders, inputs, work)
        _synchronize(scale.device)
        encoded = time.perf_counter()
        out, batch = model(features, transcripts)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _synchronize(scale.device)
    end = time.perf_counter()
    return StepTiming(encoded - start, end - start, int(batch.attention_mask.sum()))


@contextlib.contextmanager
def _memory_freed(device: str) -> Iterator[None]:
    """Free what a configuration left (also after an out-of-memory error) and reset the peak counter."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_configuration(
    llm_name: str,
    work: Workload,
    scale: Scale,
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerFast,
    encoders: Encoders,
    steps: int,
    warmup: int,
    peaks: Mapping[str, float | None],
) -> dict[str, Any]:
    """Build one LLM's AVSRModel for one task on the device and time its training steps.

    Returns:
        the configuration's figures: step times, throughput, memory, FLOPs (analytic and counted by
        torch on the first warm-up step) and MFU against each peak in ``peaks``.
    """
    shape = scale.llms[llm_name]
    rank, alpha = recipe.lora_for(shape)
    cfg = ModelConfig(
        modalities=tuple(work.rates),
        rates=dict(work.rates),
        input_dims={"audio": scale.whisper.d_model, "video": scale.avhubert.encoder_embed_dim},
        compression=recipe.compression,
        projector_hidden=recipe.projector_hidden,
        projector_layernorm=recipe.projector_layernorm,
        lora_rank=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        lora_targets=recipe.lora_targets,
        prompt=recipe.prompts[work.task],
    )
    with torch.device(scale.device):
        llm = LlamaForCausalLM(llama_config(shape, len(tokenizer), recipe.attn_implementation))
        model = AVSRModel(cfg, llm, tokenizer).train()
    frozen_llm = sum(p.numel() for p in llm.parameters() if not p.requires_grad)
    built = torch.cuda.memory_allocated() if scale.device == "cuda" else None
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=recipe.lr[work.task],
        betas=recipe.betas,
        weight_decay=recipe.weight_decay,
    )
    words = [f"w{i}" for i in range(work.transcript_tokens)]
    step = functools.partial(
        training_step,
        model,
        encoders,
        make_inputs(work, scale),
        work,
        [" ".join(words)] * work.batch,
        optimizer,
        scale,
        recipe.grad_clip,
    )
    flops = step_flops(
        work,
        shape,
        len(tokenizer),
        rank,
        recipe.projector_hidden,
        recipe.compression,
        scale.whisper,
        scale.avhubert,
    )
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        first = step()
    if first.llm_tokens != work.batch * work.llm_tokens:
        raise RuntimeError(
            f"the model built {first.llm_tokens} LLM input tokens, the FLOP count assumes "
            f"{work.batch} x {work.llm_tokens}: the input layout and Workload.llm_tokens disagree"
        )
    for _ in range(warmup - 1):
        step()
    timings = [step() for _ in range(steps)]
    step_s = statistics.median(t.total_s for t in timings)
    achieved = flops["total"] / step_s
    return {
        "status": "ok",
        "lora_rank": rank,
        "lora_alpha": alpha,
        "parameters": {"llm_frozen": frozen_llm, "trainable": model.count_trainable()},
        "step_s_median": step_s,
        "step_s": [t.total_s for t in timings],
        "encoders_s_median": statistics.median(t.encoders_s for t in timings),
        "llm_tokens_per_s": work.batch * work.llm_tokens / step_s,
        "utterances_per_s": work.batch / step_s,
        "memory_after_build_bytes": built,  # encoders, LLM, adapters and projectors
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if scale.device == "cuda" else None,
        "flops": flops,
        "flops_counted_by_torch": counter.get_total_flops(),
        "achieved_flops_per_s": achieved,
        "mfu_measured_peak": achieved / peaks["measured"],
        "mfu_datasheet_peak": achieved / peaks["datasheet"] if peaks["datasheet"] else None,
    }


# ----- report -------------------------------------------------------------------------------------------
def markdown_table(report: Mapping[str, Any]) -> str:
    peak = report["peak_flops_per_s"]
    datasheet = f"{peak['datasheet'] / 1e12:.0f} TFLOP/s" if peak["datasheet"] else "unknown"
    kind = "tiny smoke shapes, fp32" if report["smoke"] else "paper sizes, bf16 autocast"
    lines = [
        f"# AVSRModel training steps on {report['device_name']} ({kind})",
        "",
        f"torch {report['torch']}, transformers {report['transformers']}, peft {report['peft']}; "
        f"{report['workload']['seconds']} s utterances; matmul peak measured "
        f"{peak['measured'] / 1e12:.3g} TFLOP/s, datasheet {datasheet}. "
        "Assumptions and the FLOP formula: bench/gpu_paper_scale.py.",
        "",
        "| LLM | task | rates | batch | LLM tokens/utt. | step ms | encoders ms | LLM tokens/s "
        "| peak GiB | TFLOP/step | MFU (measured peak) | MFU (datasheet) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["configurations"]:
        rates = ",".join(f"{m[0]}{r}" for m, r in row["rates"].items())
        head = (
            f"| {row['llm']} | {row['task']} | {rates} | {row['batch']} | {row['llm_tokens_per_utterance']} "
        )
        if row["status"] != "ok":
            lines.append(head + f"| {row['status']} |" + " |" * 6)
            continue
        memory = row["peak_memory_bytes"]
        mfu_sheet = row["mfu_datasheet_peak"]
        lines.append(
            head + f"| {row['step_s_median'] * 1e3:.1f} | {row['encoders_s_median'] * 1e3:.1f} "
            f"| {row['llm_tokens_per_s']:.0f} | {f'{memory / 2**30:.1f}' if memory else 'n/a'} "
            f"| {row['flops']['total'] / 1e12:.3g} | {row['mfu_measured_peak']:.1%} "
            f"| {f'{mfu_sheet:.1%}' if mfu_sheet else 'n/a'} |"
        )
    return "\n".join(lines) + "\n"


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a comma-separated subset of {list(allowed)}"
            )
        return items

    return parse


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every requested configuration, write the JSON and Markdown reports, and return the report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", type=_choices(list(LLAMA_32)), default=list(LLAMA_32))
    parser.add_argument("--tasks", type=_choices(list(TASK_RATES)), default=list(TASK_RATES))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (the first also counts FLOPs)"
    )
    parser.add_argument("--seconds", type=float, help="length of every utterance (default 6, --smoke 1)")
    parser.add_argument("--out", type=Path, default=Path("results/bench/gpu_paper_scale.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU in fp32 (tests)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    scale = SMOKE if args.smoke else PAPER
    if scale.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or with --smoke for the CPU code path")
    recipe = read_recipe()
    device_name = torch.cuda.get_device_name() if scale.device == "cuda" else "CPU"
    peaks = {"measured": measure_matmul_peak(scale), "datasheet": datasheet_peak(device_name)}
    log.info("%s: measured matmul peak %.1f TFLOP/s", device_name, peaks["measured"] / 1e12)
    tokenizer = make_tokenizer(scale.vocab, list(recipe.prompts.values()))
    encoders = build_encoders(scale, args.tasks)
    max_frames = scale.max_frames or recipe.max_frames
    seconds = args.seconds or scale.seconds
    rows = []
    for llm_name in args.llm:
        for task in args.tasks:
            prompt = len(tokenizer(recipe.prompts[task], add_special_tokens=False)["input_ids"])
            work = make_workload(task, scale, seconds, max_frames, prompt)
            row = {
                "llm": llm_name,
                "task": task,
                "rates": dict(work.rates),
                "batch": work.batch,
                "llm_tokens_per_utterance": work.llm_tokens,
            }
            with _memory_freed(scale.device):
                try:
                    row |= run_configuration(
                        llm_name, work, scale, recipe, tokenizer, encoders, args.steps, args.warmup, peaks
                    )
                except torch.cuda.OutOfMemoryError as error:
                    row |= {"status": "out of memory", "error": str(error).splitlines()[0]}
            done = f"{row['step_s_median'] * 1e3:.1f} ms a step" if row["status"] == "ok" else row["status"]
            log.info("%s %s: %s", llm_name, task, done)
            rows.append(row)
    report = {
        "device_name": device_name,
        "smoke": args.smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "git_commit": git_commit(),
        "peak_flops_per_s": peaks,
        "workload": {
            "seconds": seconds,
            "whisper_window_positions": scale.whisper.max_source_positions,
            "video_frame_size": scale.frame_size,
            "max_frames": max_frames,
            "transcript_tokens_per_second": TRANSCRIPT_TOKENS_PER_SECOND,
            "steps": args.steps,
            "warmup": args.warmup,
        },
        "models": {
            "llms": {name: asdict(scale.llms[name]) for name in args.llm},
            "vocab_with_added_tokens": len(tokenizer),
            "whisper_encoder": {
                k: getattr(scale.whisper, k)
                for k in (
                    "d_model",
                    "encoder_layers",
                    "encoder_attention_heads",
                    "encoder_ffn_dim",
                    "num_mel_bins",
                    "max_source_positions",
                )
            },
            "avhubert": asdict(scale.avhubert),
        },
        "recipe": asdict(recipe),
        "configurations": rows,
    }
    write_json_atomic(args.out, report)
    write_text_atomic(args.out.with_suffix(".md"), markdown_table(report))
    log.info("wrote %s and %s", args.out, args.out.with_suffix(".md"))
    return report


if __name__ == "__main__":
    main()
