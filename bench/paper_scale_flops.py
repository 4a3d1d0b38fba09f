"""The model sizes and workload that bench/gpu_paper_scale.py times, and the FLOPs of its training step.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count
from transformers import WhisperConfig

from avsr_sinks.encoders.avhubert import FRAME_RATE as VIDEO_FPS
from avsr_sinks.encoders.avhubert import RESNET_WIDTHS, AVHubertConfig

AUDIO_FPS = 50  # Whisper encoder frames per second
TRANSCRIPT_TOKENS_PER_SECOND = 4
TASK_RATES = {"asr": {"audio": 4}, "vsr": {"video": 2}, "avsr": {"audio": 4, "video": 2}}
LLAMA3_VOCAB = 128_256


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
