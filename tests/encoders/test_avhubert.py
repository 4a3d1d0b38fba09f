"""AV-HuBERT in plain PyTorch: the Large layout, the safe fairseq converter, LoRA and batched encoding."""

from __future__ import annotations

import argparse
import builtins
import enum
import json
import os
import pickle
import sys
import types
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from avsr_sinks.encoders.avhubert import AVHubertConfig, AVHubertModel, add_lora, padding_mask_from_lengths
from avsr_sinks.encoders.avhubert_convert import DROPPED_KEYS, convert_avhubert
from avsr_sinks.encoders.avhubert_encoder import load_video_encoder
from avsr_sinks.encoders.fairseq_checkpoint import CheckpointRefusedError, read_fairseq_checkpoint
from avsr_sinks.io import sha256_file

TINY = AVHubertConfig(
    encoder_embed_dim=32,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_embed_dim=64,
    layer_norm_first=True,
    conv_pos=8,  # even, like Large's 128: exercises the dropped extra frame
    conv_pos_groups=4,
    audio_feat_dim=12,
)
PRETRAINING_EXTRAS = {  # what large_vox_iter5.pt carries beside the encoder (final_dim 16, 20 clusters)
    "mask_emb": (12,),
    "final_proj.weight": (16, 32),
    "final_proj.bias": (16,),
    "label_embs_concat": (20, 16),
}


# --- (a) the Large layout -----------------------------------------------------------------------------
# Shapes taken from the public definition (avhubert/resnet.py, avhubert/hubert.py, fairseq wav2vec2.py and
# MultiheadAttention) with large_vox_iter5.yaml: d 1024, 24 layers, ffn 4096, conv_pos 128 in 16 groups,
# audio_feat_dim 104.
LARGE_KEYS = {
    "feature_extractor_video.resnet.frontend3D.0.weight": (64, 1, 5, 7, 7),  # Conv3d, no bias
    "feature_extractor_video.resnet.frontend3D.1.running_var": (64,),  # BatchNorm3d
    "feature_extractor_video.resnet.frontend3D.2.weight": (64,),  # PReLU(64)
    "feature_extractor_video.resnet.trunk.layer1.0.conv1.weight": (64, 64, 3, 3),
    "feature_extractor_video.resnet.trunk.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "feature_extractor_video.resnet.trunk.layer2.0.downsample.1.running_mean": (128,),
    "feature_extractor_video.resnet.trunk.layer4.1.conv2.weight": (512, 512, 3, 3),
    "feature_extractor_video.resnet.trunk.layer4.1.relu2.weight": (512,),
    "feature_extractor_video.proj.weight": (1024, 512),
    "feature_extractor_audio.proj.weight": (1024, 104),
    "layer_norm.weight": (2048,),
    "post_extract_proj.weight": (1024, 2048),
    "post_extract_proj.bias": (1024,),
    "encoder.pos_conv.0.weight_g": (1, 1, 128),
    "encoder.pos_conv.0.weight_v": (1024, 64, 128),
    "encoder.pos_conv.0.bias": (1024,),
    "encoder.layers.0.self_attn.q_proj.weight": (1024, 1024),
    "encoder.layers.0.self_attn.k_proj.bias": (1024,),
    "encoder.layers.0.self_attn.v_proj.weight": (1024, 1024),
    "encoder.layers.0.self_attn.out_proj.weight": (1024, 1024),
    "encoder.layers.0.self_attn_layer_norm.weight": (1024,),
    "encoder.layers.0.fc1.weight": (4096, 1024),
    "encoder.layers.0.fc2.weight": (1024, 4096),
    "encoder.layers.23.final_layer_norm.bias": (1024,),
    "encoder.layer_norm.weight": (1024,),
}


def test_large_size_and_key_layout() -> None:
    with torch.device("meta"):
        model = AVHubertModel()
    # By hand: 3-D stem 64*1*5*7*7 + BN 2*64 + PReLU 64 = 15,872; ResNet-18 trunk with per-channel PReLUs
    # 148,224 + 526,080 + 2,100,736 + 8,395,776 = 11,170,816; video proj 512*1024+1024 = 525,312; audio
    # proj 104*1024+1024 = 107,520; fusion layer norm 2*2048 = 4,096; post_extract_proj 2048*1024+1024 =
    # 2,098,176; pos_conv 1024*64*128 + 128 + 1024 = 8,389,760; 24 layers x (4*(1024^2+1024) + 2*2048 +
    # 2*1024*4096 + 4096 + 1024) = 24 x 12,596,224 = 302,309,376; final layer norm 2,048.
    # Total 324,622,976: the published 325M of AV-HuBERT Large, less the pre-training heads.
    assert sum(p.numel() for p in model.parameters()) == 324_622_976
    state = model.state_dict()
    assert {k: tuple(state[k].shape) for k in LARGE_KEYS} == LARGE_KEYS
    # 137 ResNet tensors (7 stem + 8 blocks x 14 + 3 downsamples x 6), 8 projection/fusion tensors,
    # 3 pos_conv + 2 final norm + 24 x 16 layer tensors.
    assert len(state) == 137 + 8 + 5 + 24 * 16
    assert not any(k.startswith(tuple(DROPPED_KEYS)) for k in state)


# --- a synthetic fairseq checkpoint with the real layout ----------------------------------------------
def _named(cls: type, module: str, name: str) -> type:
    cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
    return cls


class _ContainerMetadata:
    def __init__(self, key_type: Any) -> None:
        self.key_type, self.element_type, self.optional = key_type, Any, True


class _AnyNode:
    def __init__(self, value: Any, parent: Any) -> None:
        self._val, self._parent = value, parent


class _DictConfig:
    """Pickles like omegaconf: ``_content`` of value nodes that point back at their parent."""

    def __init__(self, content: dict[str, Any]) -> None:
        self._metadata = _ContainerMetadata(str)
        self._parent = None
        self._content = {
            k: v if isinstance(v, _DictConfig) else _AnyNode(v, self) for k, v in content.items()
        }


class _Choices(enum.Enum):
    default = "default"
    layer_norm = "layer_norm"


class _Dictionary:
    def __init__(self, symbols: list[str]) -> None:
        self.symbols, self.count, self.indices = (
            symbols,
            [1] * len(symbols),
            {s: i for i, s in enumerate(symbols)},
        )


FAKE_CLASSES = {
    "omegaconf.dictconfig": {"DictConfig": _named(_DictConfig, "omegaconf.dictconfig", "DictConfig")},
    "omegaconf.nodes": {"AnyNode": _named(_AnyNode, "omegaconf.nodes", "AnyNode")},
    "omegaconf.base": {
        "ContainerMetadata": _named(_ContainerMetadata, "omegaconf.base", "ContainerMetadata")
    },
    "fairseq.dataclass.constants": {"Choices": _named(_Choices, "fairseq.dataclass.constants", "Choices")},
    "fairseq.data.dictionary": {"Dictionary": _named(_Dictionary, "fairseq.data.dictionary", "Dictionary")},
}


def _fake_modules() -> dict[str, types.ModuleType]:
    """The omegaconf/fairseq modules the pickle names, for the time of saving only."""
    modules: dict[str, types.ModuleType] = {}
    for path, members in FAKE_CLASSES.items():
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        for name, cls in members.items():
            setattr(modules[path], name, cls)
    return modules


def _fairseq_cfg(config: AVHubertConfig, **model_overrides: Any) -> dict[str, Any]:
    model = {
        "_name": "av_hubert",
        **asdict(config),
        "modality_fuse": "concat",
        "activation_fn": "gelu",
        "resnet_relu_type": "prelu",
        "sub_encoder_layers": 0,
        "extractor_mode": _Choices.default,
        "label_rate": "${task.label_rate}",
        "final_dim": 16,
        "untie_final_proj": True,
        "mask_prob_image": 0.3,
    }
    model.update(model_overrides)
    return {"model": model, "task": {"_name": "av_hubert_pretraining", "labels": ["km"], "sample_rate": 25}}


def _write_checkpoint(path: Path, state: dict[str, torch.Tensor], cfg: dict[str, Any]) -> Path:
    """torch.save a dict laid out like a fairseq checkpoint, with cfg as an omegaconf-like object."""
    with mock.patch.dict(sys.modules, _fake_modules()):
        torch.save(
            {
                "args": None,
                "cfg": _DictConfig({k: _DictConfig(v) for k, v in cfg.items()}),
                "model": OrderedDict(state),
                "optimizer_history": [
                    {"criterion_name": "AVHubertCriterion", "optimizer_name": "FairseqAdam", "num_updates": 9}
                ],
                "task_state": {"dictionaries": [_Dictionary(["<s>", "<pad>", "</s>", "<unk>", "0", "1"])]},
                "extra_state": {"train_iterator": {"epoch": 2}, "best_loss": np.float64(3.25)},
            },
            path,
        )
    return path


def _random_model(config: AVHubertConfig, seed: int) -> AVHubertModel:
    """A model whose every float tensor is random and exactly representable in float16 (fairseq fp16)."""
    torch.manual_seed(seed)
    model = AVHubertModel(config).eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bias")):
                t.normal_(0, 0.1)
            elif t.ndim == 1:  # norm scales and PReLU slopes
                t.uniform_(0.5, 1.5)
            t.copy_(t.half().float())
    return model


def _checkpoint_state(model: AVHubertModel, prefix: str = "") -> dict[str, torch.Tensor]:
    state = {f"{prefix}{k}": v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    for key, shape in PRETRAINING_EXTRAS.items():
        state[f"{prefix}{key}"] = torch.randn(shape).half()
    return state


@pytest.fixture(scope="module")
def source() -> AVHubertModel:
    return _random_model(TINY, seed=7)


@pytest.fixture(scope="module")
def checkpoint(source: AVHubertModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_checkpoint(
        tmp_path_factory.mktemp("fairseq") / "tiny_vox_iter5.pt",
        _checkpoint_state(source),
        _fairseq_cfg(TINY),
    )


@pytest.fixture(scope="module")
def converted(checkpoint: Path) -> Path:
    return convert_avhubert(checkpoint, checkpoint.parent / "avhubert-tiny")


def _video(batch: int, frames: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, frames, size, size, generator=gen)


# --- an independent forward in the fairseq order, on the raw state dict ------------------------------
def _fairseq_style_forward(
    sd: dict[str, torch.Tensor],
    cfg: AVHubertConfig,
    video: torch.Tensor,
    audio: torch.Tensor | None = None,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """resnet.py, hubert.py extract_finetune and wav2vec2.py's encoder, with the torch ops fairseq calls."""

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
        )

    def ln(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"])

    r = "feature_extractor_video.resnet."
    x = F.conv3d(video, sd[f"{r}frontend3D.0.weight"], stride=(1, 2, 2), padding=(2, 3, 3))
    x = F.prelu(bn(x, f"{r}frontend3D.1"), sd[f"{r}frontend3D.2.weight"])
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    b, c, t, h, w = x.shape
    x = x.transpose(1, 2).reshape(b * t, c, h, w)
    for stage in range(1, 5):
        for block in range(2):
            p = f"{r}trunk.layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1)
            out = F.prelu(bn(out, f"{p}.bn1"), sd[f"{p}.relu1.weight"])
            out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.prelu(out + x, sd[f"{p}.relu2.weight"])
    x = F.adaptive_avg_pool2d(x, 1).view(b, t, -1).transpose(1, 2)  # (B, 512, T), fairseq's layout
    v = "feature_extractor_video.proj"
    feats_video = F.linear(x.transpose(1, 2), sd[f"{v}.weight"], sd[f"{v}.bias"]).transpose(1, 2)
    a = "feature_extractor_audio.proj"
    feats_audio = (
        feats_video.new_zeros(feats_video.shape)
        if audio is None
        else F.linear(audio, sd[f"{a}.weight"], sd[f"{a}.bias"]).transpose(1, 2)
    )
    features = ln(torch.cat([feats_audio, feats_video], dim=1).transpose(1, 2), "layer_norm")
    x = F.linear(features, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    if padding_mask is not None:
        x = x.masked_fill(padding_mask[..., None], 0)
    d = cfg.encoder_embed_dim
    conv = torch.nn.Conv1d(d, d, cfg.conv_pos, padding=cfg.conv_pos // 2, groups=cfg.conv_pos_groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fairseq uses the deprecated weight_norm
        conv = torch.nn.utils.weight_norm(conv, name="weight", dim=2)
    conv.load_state_dict({k: sd[f"encoder.pos_conv.0.{k}"] for k in ("weight_g", "weight_v", "bias")})
    x_conv = conv(x.transpose(1, 2))
    if cfg.conv_pos % 2 == 0:
        x_conv = x_conv[:, :, :-1]  # SamePad
    x = x + F.gelu(x_conv).transpose(1, 2)
    if not cfg.layer_norm_first:
        x = ln(x, "encoder.layer_norm")
    x = x.transpose(0, 1)  # T x B x C
    for i in range(cfg.encoder_layers):
        p = f"encoder.layers.{i}"

        def attn(y: torch.Tensor, p: str = p) -> torch.Tensor:
            s = f"{p}.self_attn"
            out, _ = F.multi_head_attention_forward(
                y,
                y,
                y,
                embed_dim_to_check=d,
                num_heads=cfg.encoder_attention_heads,
                in_proj_weight=None,
                in_proj_bias=torch.cat([sd[f"{s}.{n}_proj.bias"] for n in "qkv"]),
                bias_k=None,
                bias_v=None,
                add_zero_attn=False,
                dropout_p=0.0,
                out_proj_weight=sd[f"{s}.out_proj.weight"],
                out_proj_bias=sd[f"{s}.out_proj.bias"],
                training=False,
                key_padding_mask=padding_mask,
                need_weights=False,
                use_separate_proj_weight=True,
                q_proj_weight=sd[f"{s}.q_proj.weight"],
                k_proj_weight=sd[f"{s}.k_proj.weight"],
                v_proj_weight=sd[f"{s}.v_proj.weight"],
            )
            return out

        def ffn(y: torch.Tensor, p: str = p) -> torch.Tensor:
            y = F.gelu(F.linear(y, sd[f"{p}.fc1.weight"], sd[f"{p}.fc1.bias"]))
            return F.linear(y, sd[f"{p}.fc2.weight"], sd[f"{p}.fc2.bias"])

        if cfg.layer_norm_first:
            x = x + attn(ln(x, f"{p}.self_attn_layer_norm"))
            x = x + ffn(ln(x, f"{p}.final_layer_norm"))
        else:
            x = ln(x + attn(x), f"{p}.self_attn_layer_norm")
            x = ln(x + ffn(x), f"{p}.final_layer_norm")
    x = x.transpose(0, 1)
    return ln(x, "encoder.layer_norm") if cfg.layer_norm_first else x


@pytest.mark.parametrize("layer_norm_first", [True, False], ids=["large-style", "base-style"])
def test_forward_matches_fairseq_order(layer_norm_first: bool) -> None:
    cfg = replace(TINY, layer_norm_first=layer_norm_first, conv_pos=5 if layer_norm_first else 8)
    model = _random_model(cfg, seed=3)
    sd = model.state_dict()
    video, audio = _video(2, 6), torch.randn(2, 6, cfg.audio_feat_dim)
    mask = padding_mask_from_lengths([6, 4], 6)
    video[1, :, 4:] = 0
    with torch.inference_mode():
        for kwargs in ({}, {"audio": audio}, {"padding_mask": mask}):
            ours, out_mask = model(video=video, **kwargs)
            reference = _fairseq_style_forward(sd, cfg, video, **kwargs)
            keep = ~out_mask
            torch.testing.assert_close(ours[keep], reference[keep], rtol=1e-5, atol=1e-5)
        audio_only, _ = model(audio=audio)
        assert audio_only.shape == (2, 6, cfg.encoder_embed_dim) and torch.isfinite(audio_only).all()


# --- (b) conversion ---------------------------------------------------------------------------------
# Importing any of these while reading fails: the reader must do without omegaconf and fairseq, which
# the pipeline does not depend on (omegaconf may be present, pulled in by DVC's hydra).
NO_CONFIG_LIBRARIES = {"omegaconf": None, "fairseq": None, "avhubert": None}


def test_checkpoint_reads_as_plain_data_without_its_modules(checkpoint: Path) -> None:
    with mock.patch.dict(sys.modules, NO_CONFIG_LIBRARIES):
        ckpt = read_fairseq_checkpoint(checkpoint)
    model_cfg = ckpt["cfg"]["model"]
    assert model_cfg["encoder_layers"] == 2 and model_cfg["extractor_mode"] == "default"
    assert model_cfg["label_rate"] == "${task.label_rate}" and ckpt["cfg"]["task"]["labels"] == ["km"]
    assert ckpt["task_state"]["dictionaries"][0]["symbols"][-1] == "1"
    assert ckpt["optimizer_history"][0]["num_updates"] == 9
    assert ckpt["model"]["encoder.layers.1.fc2.bias"].dtype == torch.float16
    assert json.loads(json.dumps({k: v for k, v in ckpt.items() if k not in ("model", "extra_state")}))


def test_real_omegaconf_pickle_reads_as_plain_data(tmp_path: Path) -> None:
    """The layout of a genuine DictConfig (structured, with an enum and an interpolation), where installed."""
    omegaconf = pytest.importorskip("omegaconf")

    @dataclass
    class ModelConfig:
        _name: str = "av_hubert"
        label_rate: int = omegaconf.II("task.label_rate")
        extractor_mode: _Choices = _Choices.layer_norm
        encoder_layers: int = 24
        latent_temp: tuple[float, float, float] = (2.0, 0.5, 0.999995)
        resnet_weights: str | None = None

    cfg = omegaconf.OmegaConf.create(
        {"model": omegaconf.OmegaConf.structured(ModelConfig), "task": {"labels": ["km"]}}
    )
    _named(ModelConfig, "avhubert.hubert", "AVHubertConfig")  # once omegaconf has read its annotations
    path = tmp_path / "omegaconf.pt"
    fakes = {k: v for k, v in _fake_modules().items() if not k.startswith("omegaconf")}
    fakes["avhubert"], fakes["avhubert.hubert"] = (
        types.ModuleType("avhubert"),
        types.ModuleType("avhubert.hubert"),
    )
    fakes["avhubert.hubert"].AVHubertConfig = ModelConfig
    with mock.patch.dict(sys.modules, fakes):
        torch.save({"cfg": cfg, "model": {}}, path)
    with mock.patch.dict(sys.modules, NO_CONFIG_LIBRARIES):
        plain = read_fairseq_checkpoint(path)["cfg"]
    assert plain == {
        "model": {
            "_name": "av_hubert",
            "label_rate": "${task.label_rate}",
            "extractor_mode": "layer_norm",
            "encoder_layers": 24,
            "latent_temp": [2.0, 0.5, 0.999995],
            "resnet_weights": None,
        },
        "task": {"labels": ["km"]},
    }


def test_conversion_reproduces_the_source_model(
    source: AVHubertModel, checkpoint: Path, converted: Path
) -> None:
    meta = json.loads((converted / "conversion.json").read_text())
    assert meta["dropped_keys"] == sorted(PRETRAINING_EXTRAS) and meta["loaded_keys"] == len(
        source.state_dict()
    )
    assert meta["source_sha256"] == sha256_file(checkpoint)
    assert json.loads((converted / "config.json").read_text()) == {"model_type": "av_hubert", **asdict(TINY)}
    weights = load_file(str(converted / "model.safetensors"))
    assert all(v.dtype in (torch.float32, torch.int64) for v in weights.values())
    assert not list(converted.parent.glob(".avhubert-tiny*"))  # no temporary folder left behind

    encoder = load_video_encoder(converted)
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.model.parameters())
    assert encoder.frame_rate == 25 and encoder.d_model == 32
    ident = encoder.identity()
    assert ident["weights_sha256"] == sha256_file(converted / "model.safetensors")
    assert ident["name"] == "avhubert-tiny" and json.loads(json.dumps(ident)) == ident
    video, audio = _video(2, 5), torch.randn(2, 5, TINY.audio_feat_dim)
    with torch.inference_mode():
        for kwargs in ({"video": video}, {"video": video, "audio": audio}):
            assert torch.equal(encoder.model(**kwargs)[0], source(**kwargs)[0])


def test_finetuned_layout_converts_to_the_same_weights(
    source: AVHubertModel, converted: Path, tmp_path: Path
) -> None:
    state = _checkpoint_state(source, prefix="encoder.w2v_model.")
    state["decoder.embed_tokens.weight"] = torch.zeros(10, 8)
    cfg = {"model": {"_name": "av_hubert_seq2seq", "w2v_args": _fairseq_cfg(TINY)}}
    out = convert_avhubert(_write_checkpoint(tmp_path / "ft.pt", state, cfg), tmp_path / "ft")
    assert (out / "model.safetensors").read_bytes() == (converted / "model.safetensors").read_bytes()
    assert "decoder.embed_tokens.weight" in json.loads((out / "conversion.json").read_text())["dropped_keys"]


def test_unexpected_missing_or_misshapen_keys_fail_by_name(source: AVHubertModel, tmp_path: Path) -> None:
    base = _checkpoint_state(source)
    extra = {**base, "encoder.layers.0.self_attn.rotary.weight": torch.zeros(2)}
    missing = {k: v for k, v in base.items() if k != "encoder.layers.1.fc2.bias"}
    misshapen = {**base, "post_extract_proj.bias": torch.zeros(31)}
    cases = [
        (extra, _fairseq_cfg(TINY), r"unexpected keys \['encoder\.layers\.0\.self_attn\.rotary\.weight'\]"),
        (missing, _fairseq_cfg(TINY), r"missing keys \['encoder\.layers\.1\.fc2\.bias'\]"),
        (misshapen, _fairseq_cfg(TINY), r"post_extract_proj\.bias.*\(31,\), \(32,\)"),
        (base, _fairseq_cfg(TINY, encoder_layers=3), r"missing keys \['encoder\.layers\.2\."),
        (base, _fairseq_cfg(TINY, modality_fuse="add"), "modality_fuse"),
        (base, _fairseq_cfg(TINY, _name="wav2vec2"), "'wav2vec2' model, not av_hubert"),
    ]
    for i, (state, cfg, message) in enumerate(cases):
        ckpt = _write_checkpoint(tmp_path / f"bad{i}.pt", state, cfg)
        with pytest.raises(ValueError, match=message):
            convert_avhubert(ckpt, tmp_path / f"out{i}")
        assert not (tmp_path / f"out{i}").exists()


# --- (c) malicious pickles ---------------------------------------------------------------------------
class _Payload:
    def __init__(self, func: Any, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return self.func, (self.arg,)


def test_code_in_a_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = {
        f"{os.system.__module__}.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w')"),
    }
    for name, payload in payloads.items():
        path = tmp_path / f"{name}.pt"
        torch.save({"model": {}, "cfg": {"model": payload}}, path)
        with pytest.raises(CheckpointRefusedError, match=rf"{path}.*refused to unpickle global\(s\) {name}"):
            read_fairseq_checkpoint(path)
        with pytest.raises(CheckpointRefusedError, match=name):
            convert_avhubert(path, tmp_path / "out")
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=2))
    with pytest.raises(CheckpointRefusedError, match=rf"{raw}: not a torch zip checkpoint"):
        read_fairseq_checkpoint(raw)
    assert not marker.exists()


def test_admitted_namespaces_stay_inert(tmp_path: Path) -> None:
    """A callable under an admitted name, e.g. fairseq's, is recorded, never imported or called."""

    def load_checkpoint(arg: str) -> None:
        raise AssertionError("the real callable must never run")

    fake = types.ModuleType("fairseq.checkpoint_utils")
    fake.load_checkpoint = _named(load_checkpoint, "fairseq.checkpoint_utils", "load_checkpoint")  # type: ignore[arg-type]
    path = tmp_path / "inert.pt"
    with mock.patch.dict(
        sys.modules, {"fairseq": types.ModuleType("fairseq"), "fairseq.checkpoint_utils": fake}
    ):
        torch.save({"x": _Payload(fake.load_checkpoint, "/etc/passwd"), "ns": argparse.Namespace(a=1)}, path)
    with mock.patch.dict(sys.modules, NO_CONFIG_LIBRARIES):
        ckpt = read_fairseq_checkpoint(path)
    assert ckpt["x"] == "/etc/passwd" and ckpt["ns"] == {"a": 1}


# --- (d) LoRA ------------------------------------------------------------------------------------------
def test_lora_trains_only_adapters_and_starts_as_identity() -> None:
    model = _random_model(TINY, seed=7)
    video = _video(1, 4)
    with torch.no_grad():
        before, _ = model(video=video)
    add_lora(model, rank=4, alpha=8, dropout=0.0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == TINY.encoder_layers * 2 * 2  # layers x (q, v) x (A, B)
    assert all(".self_attn.q_proj.lora_" in n or ".self_attn.v_proj.lora_" in n for n in trainable)
    lora_a = model.encoder.layers[0].self_attn.q_proj.lora_A["default"].weight
    assert lora_a.shape == (4, 32) and model.encoder.layers[0].self_attn.q_proj.scaling["default"] == 2.0
    after, _ = model(video=video)
    assert torch.equal(after, before)
    after.square().mean().backward()
    assert model.encoder.layers[1].self_attn.v_proj.lora_B["default"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


# --- (e) padding and batching -------------------------------------------------------------------------
def test_batched_encode_equals_one_at_a_time(converted: Path) -> None:
    encoder = load_video_encoder(converted)
    clips = [_video(1, n, size=32, seed=n)[0].transpose(0, 1) for n in (7, 3, 1)]  # (T, 1, H, W) each
    together = encoder.encode_frames(clips)
    for clip, batched in zip(clips, together, strict=True):
        (alone,) = encoder.encode_frames([clip])
        assert batched.shape == alone.shape == (clip.shape[0], 32)
        torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    assert encoder.encode([]) == []


def test_decoded_videos_are_cropped_and_normalised_as_avhubert_expects(
    converted: Path, tmp_path: Path
) -> None:
    encoder = load_video_encoder(converted)
    gen = np.random.default_rng(0)
    videos = [gen.integers(0, 256, (n, 96, 100), dtype=np.uint8) for n in (3, 2)]
    by_hand = [  # centre 88 x 88, /255, mean 0.421, std 0.165
        ((torch.from_numpy(v[:, 4:92, 6:94]).float() / 255 - 0.421) / 0.165)[:, None] for v in videos
    ]
    for ours, reference in zip(encoder.encode(videos), encoder.encode_frames(by_hand), strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
        assert torch.isfinite(ours).all()
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode([np.zeros((3, 88, 88), np.float32)])
    with pytest.raises(ValueError, match="clip 1"):
        encoder.encode_frames([torch.zeros(3, 1, 88, 88), torch.zeros(3, 1, 96, 96)])
    with pytest.raises(FileNotFoundError, match="convert_avhubert.py"):
        load_video_encoder(tmp_path / "nowhere")
    assert padding_mask_from_lengths([2, 1], 3).tolist() == [[False, False, True], [False, True, True]]
