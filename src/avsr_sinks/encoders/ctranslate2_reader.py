"""Read a CTranslate2 ``model.bin`` without the ctranslate2 runtime; map its WhisperSpec onto transformers.

The layout is the one written by ``ctranslate2/specs/model_spec.py`` (``_serialize``) and read by
``src/models/model.cc`` (little-endian throughout)::

    uint32 binary_version                    (4..6 share the layout below)
    string spec_name; uint32 spec_revision   (string = uint16 length incl. NUL, bytes, NUL)
    uint32 n_variables
    n_variables x { string name; uint8 rank; uint32 dims[rank]; uint8 dtype_id; uint32 n_bytes; data }
    uint32 n_aliases
    n_aliases x { string alias; string target }
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

# ctranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 has no numpy type and is widened.
_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),
}
# Binary version 4 introduced explicit dtype ids; aliases exist since 3. Later versions are unknown to us.
SUPPORTED_BINARY_VERSIONS = (4, 5, 6)


class _Cursor:
    """Bounds-checked little-endian reads over the file's bytes."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            raise ValueError(
                f"{self.path}: truncated CTranslate2 model (needed {n} bytes for {what} at offset "
                f"{self.pos}, file has {len(self.data)}); re-download or reinstall the package that ships it"
            )
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def uint(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        return int(struct.unpack("<" + fmt, self.take(size, what))[0])

    def string(self, what: str) -> str:
        n = self.uint("H", f"length of {what}")
        raw = bytes(self.take(n, what))
        if n == 0 or raw[-1] != 0:
            raise ValueError(
                f"{self.path}: malformed string for {what} at offset {self.pos - n}; "
                "the file is not a CTranslate2 model.bin"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{self.path}: {what} at offset {self.pos - n} is not UTF-8; "
                "the file is not a CTranslate2 model.bin"
            ) from err


def _header(cur: _Cursor) -> tuple[int, str, int]:
    version = cur.uint("I", "binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ValueError(
            f"{cur.path}: CTranslate2 binary version {version} is not supported "
            f"(expected one of {SUPPORTED_BINARY_VERSIONS}); convert the model with ctranslate2 4.x"
        )
    return version, cur.string("spec name"), cur.uint("I", "spec revision")


def read_ctranslate2_header(path: str | os.PathLike[str]) -> tuple[int, str, int]:
    """Return ``(binary_version, spec_name, spec_revision)`` of a model.bin (reads only its start)."""
    path = Path(path)
    with open(path, "rb") as fh:
        return _header(_Cursor(fh.read(4096), path))


def read_ctranslate2_model(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Parse every variable of a CTranslate2 ``model.bin``.

    Returns:
        name -> array in the stored dtype (bfloat16 widened to float32; scalars are 0-d arrays). An alias
        maps to the very same array object as its target, so callers can tell tied weights apart.

    Raises:
        ValueError: naming the file, if the layout is not the expected one (wrong version, truncated,
            unknown dtype, byte count not matching the shape, trailing bytes).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        cur = _Cursor(fh.read(), path)
    _header(cur)
    n_vars = cur.uint("I", "variable count")
    out: dict[str, np.ndarray] = {}
    for i in range(n_vars):
        name = cur.string(f"name of variable {i}")
        rank = cur.uint("B", f"rank of {name}")
        shape = tuple(cur.uint("I", f"shape of {name}") for _ in range(rank))
        dtype_id = cur.uint("B", f"dtype of {name}")
        n_bytes = cur.uint("I", f"byte count of {name}")
        if dtype_id not in _DTYPES:
            raise ValueError(
                f"{path}: variable {name} has unknown dtype id {dtype_id} (known: "
                f"{ {k: v[0] for k, v in _DTYPES.items()} }); the file needs a newer reader"
            )
        dtype_name, dtype = _DTYPES[dtype_id]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n_bytes != expected:
            raise ValueError(
                f"{path}: variable {name} declares {n_bytes} bytes but shape {shape} of "
                f"{dtype_name} needs {expected}; the file is corrupt"
            )
        # copy() detaches the array from the file buffer so it can be freed.
        arr = np.frombuffer(cur.take(n_bytes, f"data of {name}"), dtype=dtype).reshape(shape).copy()
        if dtype_name == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)  # bfloat16 is the top half of a float32
        if name in out:
            raise ValueError(f"{path}: variable {name} appears twice; the file is corrupt")
        out[name] = arr
    n_aliases = cur.uint("I", "alias count")
    for _ in range(n_aliases):
        alias = cur.string("alias name")
        target = cur.string(f"target of alias {alias}")
        if target not in out:
            raise ValueError(
                f"{path}: alias {alias} points to unknown variable {target}; the file is corrupt"
            )
        out[alias] = out[target]
    if cur.pos != len(cur.data):
        raise ValueError(
            f"{path}: {len(cur.data) - cur.pos} unexpected trailing bytes after the aliases; "
            "the file is not a CTranslate2 model.bin of a supported version"
        )
    return out


# --- WhisperSpec -> transformers WhisperForConditionalGeneration ---------------------------------------
# CT2 stores decoder options as scalar variables; the transformers model has them fixed to these values.
_CT2_FLAGS = {
    "decoder/activation": 3,  # GELU (erf)
    "decoder/alibi": 0,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
    # which cross-attention CT2 returns by default; transformers uses alignment_heads instead
    "decoder/alignment_heads": 1,
    "decoder/alignment_layer": -1,
}


def _linear(hf: dict[str, torch.Tensor], prefix: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
    hf[f"{prefix}.weight"] = torch.from_numpy(weight.astype(np.float32))
    if bias is not None:
        hf[f"{prefix}.bias"] = torch.from_numpy(bias.astype(np.float32))


def _split_fused(path: Path, name: str, bias: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split a fused projection bias; the key part must be zero because Whisper's k_proj has no bias."""
    chunks = np.split(bias, parts)  # (parts * d,) -> parts x (d,)
    key_idx = 1 if parts == 3 else 0
    if np.any(chunks[key_idx] != 0):
        raise ValueError(
            f"{path}: {name} has a non-zero key bias; Whisper's k_proj has none, so the file "
            "is not a Whisper model this converter understands"
        )
    return chunks


def map_whisper_ct2(
    v: dict[str, np.ndarray], path: Path, config: WhisperConfig
) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Map CT2 Whisper variables onto ``WhisperForConditionalGeneration`` keys.

    Returns the transformers state dict (float32) and the set of CT2 names it consumed.
    """
    hf: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def get(name: str) -> np.ndarray:
        if name not in v:
            raise ValueError(
                f"{path}: CTranslate2 variable {name} is missing; the file is not a Whisper model"
            )
        used.add(name)
        return v[name]

    def norm(hf_name: str, ct2: str) -> None:
        _linear(hf, hf_name, get(f"{ct2}/gamma"), get(f"{ct2}/beta"))

    def dense(hf_name: str, ct2: str) -> None:
        _linear(hf, hf_name, get(f"{ct2}/weight"), get(f"{ct2}/bias"))

    def fused_attention(hf_prefix: str, ct2: str, q_ct2: str | None) -> None:
        """Self-attention fuses q|k|v in linear_0; cross-attention keeps q and fuses k|v in linear_1."""
        if q_ct2 is None:
            w, b = get(f"{ct2}/linear_0/weight"), get(f"{ct2}/linear_0/bias")
            names, out = ("q", "k", "v"), "linear_1"
        else:
            dense(f"{hf_prefix}.q_proj", f"{ct2}/{q_ct2}")
            w, b = get(f"{ct2}/linear_1/weight"), get(f"{ct2}/linear_1/bias")
            names, out = ("k", "v"), "linear_2"
        weights = np.split(w, len(names))  # (n * d, d) -> n x (d, d)
        biases = _split_fused(path, f"{ct2} fused bias", b, len(names))
        for n, wi, bi in zip(names, weights, biases, strict=True):
            _linear(hf, f"{hf_prefix}.{n}_proj", wi, None if n == "k" else bi)
        dense(f"{hf_prefix}.out_proj", f"{ct2}/{out}")

    for i in (1, 2):
        dense(f"model.encoder.conv{i}", f"encoder/conv{i}")
    hf["model.encoder.embed_positions.weight"] = torch.from_numpy(
        get("encoder/position_encodings/encodings").astype(np.float32)
    )
    for i in range(config.encoder_layers):
        p, c = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        fused_attention(f"{p}.self_attn", f"{c}/self_attention", None)
        norm(f"{p}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        dense(f"{p}.fc1", f"{c}/ffn/linear_0")
        dense(f"{p}.fc2", f"{c}/ffn/linear_1")
        norm(f"{p}.final_layer_norm", f"{c}/ffn/layer_norm")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    hf["model.decoder.embed_tokens.weight"] = torch.from_numpy(
        get("decoder/embeddings/weight").astype(np.float32)
    )
    hf["model.decoder.embed_positions.weight"] = torch.from_numpy(
        get("decoder/position_encodings/encodings").astype(np.float32)
    )
    for i in range(config.decoder_layers):
        p, c = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        fused_attention(f"{p}.self_attn", f"{c}/self_attention", None)
        norm(f"{p}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
        fused_attention(f"{p}.encoder_attn", f"{c}/attention", "linear_0")
        norm(f"{p}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
        dense(f"{p}.fc1", f"{c}/ffn/linear_0")
        dense(f"{p}.fc2", f"{c}/ffn/linear_1")
        norm(f"{p}.final_layer_norm", f"{c}/ffn/layer_norm")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    # CT2 aliases the output projection to the token embedding, as Whisper ties them.
    if get("decoder/projection/weight") is not v["decoder/embeddings/weight"]:
        raise ValueError(
            f"{path}: decoder/projection/weight is not tied to the embeddings; not a Whisper model"
        )
    hf["proj_out.weight"] = hf["model.decoder.embed_tokens.weight"]
    flags = {
        **_CT2_FLAGS,
        "encoder/num_heads": config.encoder_attention_heads,
        "decoder/num_heads": config.decoder_attention_heads,
    }
    for name, value in flags.items():
        if int(get(name)) != value:
            raise ValueError(
                f"{path}: CT2 option {name}={int(v[name])} (expected {value}); the transformers "
                "Whisper cannot reproduce this variant"
            )
    return hf, used


def whisper_config_from_ct2(
    v: dict[str, np.ndarray], ct2_cfg: dict[str, Any], tok: WhisperTokenizer
) -> WhisperConfig:
    """Derive the architecture from the CT2 tensors and the special token ids from the tokenizer."""
    d_model, n_mels, _ = v["encoder/conv1/weight"].shape  # (d_model, n_mels, kernel 3)
    eot, sot = tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>"])
    return WhisperConfig(
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=sum(
            1 for k in v if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight")
        ),
        decoder_layers=sum(
            1 for k in v if k.startswith("decoder/layer_") and k.endswith("ffn/linear_0/weight")
        ),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=list(ct2_cfg["suppress_ids"]),
        begin_suppress_tokens=list(ct2_cfg["suppress_ids_begin"]),
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        dtype="float32",
    )


def whisper_generation_config(
    config: WhisperConfig, ct2_cfg: dict[str, Any], tok: WhisperTokenizer
) -> GenerationConfig:
    """Greedy English transcription without timestamps (tiny.en is English-only: no language/task tokens)."""
    no_ts, prev = tok.convert_tokens_to_ids(["<|notimestamps|>", "<|startofprev|>"])
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        num_beams=1,
        do_sample=False,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=prev,
        is_multilingual=False,
        return_timestamps=False,
        alignment_heads=[list(h) for h in ct2_cfg["alignment_heads"]],
    )
