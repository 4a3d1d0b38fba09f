"""AV-HuBERT (Shi et al., ICLR 2022) in plain PyTorch: the frozen video encoder of the paper-scale pipeline.

Module and parameter names equal the state-dict keys of the official fairseq checkpoints (e.g.
``large_vox_iter5.pt``), so the converter (:mod:`avsr_sinks.encoders.avhubert_convert`) loads one
without renaming anything, and writes a folder (``model.safetensors`` + ``config.json``) that
:func:`avsr_sinks.encoders.avhubert_encoder.load_video_encoder` reads.

Only inference is ported: no input masking, modality dropout, layer drop or dropout. Video-only use
follows Llama-AVSR: the audio features are zeros, and the output is the last transformer layer after
the encoder's final layer norm, one 1024-d vector per 25 fps video frame (AV-HuBERT Large).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

FRAME_RATE = 25  # one feature per video frame: the front-end keeps the time resolution
MODEL_TYPE = "av_hubert"
RESNET_WIDTHS = (64, 128, 256, 512)  # fixed in AV-HuBERT's ResEncoder, not part of its config
LORA_TARGETS = ("q_proj", "v_proj")


@dataclass(frozen=True)
class AVHubertConfig:
    """The fields of fairseq's AVHubertConfig that shape the inference graph; defaults are AV-HuBERT Large."""

    encoder_embed_dim: int = 1024
    encoder_layers: int = 24
    encoder_attention_heads: int = 16
    encoder_ffn_embed_dim: int = 4096
    layer_norm_first: bool = True
    conv_pos: int = 128  # kernel of the convolutional positional embedding
    conv_pos_groups: int = 16
    audio_feat_dim: int = 104  # 26 log filterbanks x 4 stacked 10 ms frames = one 40 ms video frame

    def __post_init__(self) -> None:
        d = self.encoder_embed_dim
        if min(d, self.encoder_layers, self.encoder_attention_heads, self.encoder_ffn_embed_dim) <= 0:
            raise ValueError(f"AV-HuBERT sizes must be positive: {self}")
        if d % self.encoder_attention_heads or d % self.conv_pos_groups:
            raise ValueError(
                f"encoder_embed_dim {d} must divide by encoder_attention_heads "
                f"({self.encoder_attention_heads}) and conv_pos_groups ({self.conv_pos_groups})"
            )
        if self.conv_pos <= 0 or self.audio_feat_dim <= 0:
            raise ValueError(f"conv_pos and audio_feat_dim must be positive: {self}")


# --- video front-end: 3-D stem + ResNet-18 ------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet basic block with per-channel PReLU activations."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.PReLU(planes)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
            if stride != 1 or inplanes != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + residual)


def _stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes, 1))


class ResNetTrunk(nn.Module):
    """ResNet-18's four stages, applied to every frame on its own, ending in a global average pool."""

    def __init__(self) -> None:
        super().__init__()
        w1, w2, w3, w4 = RESNET_WIDTHS
        self.layer1 = _stage(w1, w1, 1)
        self.layer2 = _stage(w1, w2, 2)
        self.layer3 = _stage(w2, w3, 2)
        self.layer4 = _stage(w3, w4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))  # (N, 512)


class ResEncoder(nn.Module):
    """A 3-D convolutional stem over (time, height, width), then the 2-D ResNet trunk per frame."""

    def __init__(self) -> None:
        super().__init__()
        stem = RESNET_WIDTHS[0]
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, stem, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(stem),
            nn.PReLU(stem),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = ResNetTrunk()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> (B, T, 512)."""
        x = self.frontend3D(video)  # (B, 64, T, H/4, W/4)
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.trunk(x).view(b, t, -1)


class ModalityFrontEnd(nn.Module):
    """One modality's features projected to the model width (fairseq's SubModel without sub-encoder)."""

    def __init__(self, in_dim: int, embed_dim: int, resnet: ResEncoder | None = None) -> None:
        super().__init__()
        self.resnet = resnet
        self.proj = nn.Linear(in_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x if self.resnet is None else self.resnet(x))  # (B, T, D)


# --- transformer ------------------------------------------------------------------------------------
class WeightNormConv1d(nn.Module):
    """The weight-normalised grouped convolution of the positional embedding, with fairseq's parameters.

    The weight is ``weight_g * weight_v / ||weight_v||``, the norm taken over every axis but the kernel
    axis (weight norm with ``dim=2``), recomposed on each call. We keep the ``weight_g``/``weight_v``
    parameters rather than torch's weight-norm parametrization because the latter renames them
    (``parametrizations.weight.original0/1``), and the checkpoint would no longer load as it is. The
    output is cut to the input length, dropping the extra frame an even kernel yields (fairseq's SamePad).
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fairseq's initialisation: v ~ N(0, 4 / (kernel * channels)), g = ||v||, zero bias."""
        with torch.no_grad():
            nn.init.normal_(self.weight_v, std=math.sqrt(4 / (self.kernel_size * self.weight_v.shape[0])))
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        out = F.conv1d(x, weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)
        return out[..., : x.shape[-1]]


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (fairseq's MultiheadAttention)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, T, D); padding_mask: (B, T), True at padded frames, which no query attends to."""
        b, t, d = x.shape
        q, k, v = (
            proj(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        keep = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # scale 1/sqrt(head dim), as fairseq
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """fairseq's TransformerSentenceEncoderLayer: attention then a GELU MLP, each with a residual."""

    def __init__(self, cfg: AVHubertConfig) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.self_attn = SelfAttention(d, cfg.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), padding_mask)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x, padding_mask))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class TransformerEncoder(nn.Module):
    """Convolutional positional embedding, the layer stack and a layer norm (fairseq wav2vec 2.0 encoder)."""

    def __init__(self, cfg: AVHubertConfig) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.pos_conv = nn.Sequential(WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups), nn.GELU())
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if padding_mask is not None:
            # Zeroed padding makes the positional convolution see what an unpadded clip's border sees.
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x, padding_mask)
        # With pre-norm layers the stack ends un-normalised, so the final norm comes last.
        return self.layer_norm(x) if self.layer_norm_first else x


class AVHubertModel(nn.Module):
    """AV-HuBERT for feature extraction: per-modality front-ends, concatenation fusion, the transformer."""

    def __init__(self, cfg: AVHubertConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or AVHubertConfig()
        d = cfg.encoder_embed_dim
        self.config = cfg
        self.feature_extractor_audio = ModalityFrontEnd(cfg.audio_feat_dim, d)
        self.feature_extractor_video = ModalityFrontEnd(RESNET_WIDTHS[-1], d, resnet=ResEncoder())
        self.layer_norm = nn.LayerNorm(2 * d)  # over the concatenated [audio; video] features
        self.post_extract_proj = nn.Linear(2 * d, d)
        self.encoder = TransformerEncoder(cfg)

    def forward(
        self,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode one or both modalities.

        Args:
            video: (B, 1, T, H, W) grey mouth crops (88 x 88 in AV-HuBERT), scaled to [0, 1] then
                normalised with mean 0.421 and std 0.165; padded frames must be 0.
            audio: (B, T, audio_feat_dim) log filterbanks stacked to one row per video frame.
            padding_mask: (B, T), True at padded frames; None when no clip is padded.

        Returns:
            features (B, T, D) after the final layer norm, and the padding mask (B, T).
        """
        if video is None and audio is None:
            raise ValueError("AV-HuBERT needs video, audio or both")
        feats_video = None if video is None else self.feature_extractor_video(video)
        feats_audio = None if audio is None else self.feature_extractor_audio(audio)
        # A missing modality contributes zeros, as AV-HuBERT's extract_finetune does.
        if feats_audio is None:
            feats_audio = torch.zeros_like(feats_video)
        if feats_video is None:
            feats_video = torch.zeros_like(feats_audio)
        x = self.post_extract_proj(self.layer_norm(torch.cat([feats_audio, feats_video], dim=-1)))
        out = self.encoder(x, padding_mask)
        if padding_mask is None:
            padding_mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return out, padding_mask


def padding_mask_from_lengths(lengths: Sequence[int] | torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool mask, True past each sequence's length."""
    lengths = torch.as_tensor(lengths)
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def add_lora(
    model: AVHubertModel,
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    targets: Sequence[str] = LORA_TARGETS,
) -> AVHubertModel:
    """Add LoRA (peft) to the named attention projections of every transformer layer, freezing the rest.

    Llama-AVSR's VSR recipe adapts q_proj and v_proj with rank 64 and scaling alpha / rank = 2. The
    adapters start as a no-op (peft zeroes LoRA's B matrix), so outputs are unchanged until training.
    """
    pattern = rf"encoder\.layers\.\d+\.self_attn\.({'|'.join(targets)})"
    model.requires_grad_(False)
    inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none"),
        model,
    )
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model
