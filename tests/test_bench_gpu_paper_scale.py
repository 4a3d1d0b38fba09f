"""bench/gpu_paper_scale.py: the whole code path on tiny CPU models, and its FLOP count by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from transformers import WhisperConfig

from tests.conftest import REPO


def load_bench_script(name: str) -> ModuleType:
    """bench/<name>.py, with bench/ on sys.path while it runs, as when run as a script: it imports its
    siblings as top-level modules."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench_script("gpu_paper_scale")


@pytest.fixture(scope="module")
def flop_module(bench: ModuleType) -> ModuleType:
    """bench/paper_scale_flops.py, the very module gpu_paper_scale imported its workload and FLOPs from."""
    return sys.modules["paper_scale_flops"]


def test_smoke_run_reports_every_configuration(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    bench.main(
        [
            "--smoke",
            "--llm",
            "1b,3b",
            "--tasks",
            "asr,vsr,avsr",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = {(row["llm"], row["task"]): row for row in report["configurations"]}
    assert set(rows) == {(llm, task) for llm in ("1b", "3b") for task in ("asr", "vsr", "avsr")}
    for row in rows.values():
        assert row["status"] == "ok"
        assert row["step_s_median"] > 0 and row["llm_tokens_per_s"] > 0
        assert 0 < row["mfu_measured_peak"] <= 1
        # The analytic count equals what torch saw run: every matmul and convolution is accounted for.
        assert row["flops_counted_by_torch"] == row["flops"]["total"]
    assert rows[("1b", "avsr")]["rates"] == {"audio": 4, "video": 2}
    assert report["device_name"] == "CPU" and report["peak_flops_per_s"]["datasheet"] is None
    table = out.with_suffix(".md").read_text(encoding="utf-8")
    assert table.count("| 1b |") == 3 and table.count("| 3b |") == 3


@pytest.mark.parametrize(("compression", "first_projector_input"), [("avgpool", 2), ("stack", 4)])
def test_step_flops_by_hand(flop_module: ModuleType, compression: str, first_projector_input: int) -> None:
    """ASR at rate 2, one utterance: LLM of 1 layer, hidden 4, 2 heads of 2, 1 KV head, MLP 8, vocabulary
    10, LoRA rank 1; projector hidden 3; Whisper of width 2, 1 layer, MLP 4, 3 mel bins, 4 positions."""
    llm = flop_module.LlamaShape(layers=1, hidden=4, heads=2, kv_heads=1, intermediate=8)
    whisper = WhisperConfig(
        d_model=2,
        encoder_layers=1,
        encoder_attention_heads=1,
        encoder_ffn_dim=4,
        num_mel_bins=3,
        max_source_positions=4,
    )
    work = flop_module.Workload(
        task="asr",
        rates={"audio": 2},
        batch=1,
        window_positions=4,
        frames={"audio": 4},
        frame_size=88,
        prompt_tokens=1,
        transcript_tokens=1,
    )
    assert work.llm_tokens == 1 + (2 + 2) + 1 + 1 + 1  # BOS, <audio> 2 tokens </audio>, prompt, text, EOS
    flops = flop_module.step_flops(work, llm, 10, 1, 3, compression, whisper, flop_module.AVHubertConfig())
    # Per token: q 2*4*4, k and v 2*4*2 each, o 2*4*4, MLP 3 * 2*4*8 = 288 on 8 tokens; the LM head
    # 2*4*10 = 80 only where a label is predicted (text, EOS: 2 positions); forward + activation gradients.
    assert flops["llm_frozen_matmuls"] == 2 * (8 * (32 + 16 + 16 + 32 + 192) + 2 * 80) == 4928
    # QK^T and PV: 2 * 2 * 8 * 8 * (query width 4); forward + gradients of both operands.
    assert flops["llm_attention"] == 3 * 1024 == 3072
    # Per token: q's A 2*4*1 and B 2*1*4, v's A 2*4*1 and B 2*1*2; forward, input and weight gradients.
    assert flops["llm_lora"] == 3 * 8 * (8 + 8 + 8 + 4) == 672
    # 2 audio tokens: Linear(d_in, 3) forward + weight gradient, Linear(3, 4) forward + both gradients.
    d_in = first_projector_input
    assert flops["projectors"] == 2 * (2 * 2 * d_in * 3) + 3 * (2 * 2 * 3 * 4)
    # conv1 (3 -> 2, kernel 3) over 8 mel rows, conv2 (2 -> 2, kernel 3) over 4 positions; then q, k, v,
    # o (2*4*2*2 each), MLP 2 * (2*4*2*4), attention 4 * 4*4 * 2.
    assert flops["audio_encoder_forward"] == 2 * 8 * 3 * 3 * 2 + 2 * 4 * 2 * 3 * 2 + 4 * 32 + 2 * 64 + 128
    assert flops["audio_encoder_forward"] == 768 and flops["video_encoder_forward"] == 0
    assert (
        flops["total"]
        == 4928 + 3072 + 672 + flops["projectors"] + 768
        == {"avgpool": 9632, "stack": 9680}[compression]
    )


def test_paper_workload_fills_the_frame_budget(flop_module: ModuleType) -> None:
    work = flop_module.make_workload("avsr", flop_module.PAPER, seconds=6.0, max_frames=1500, prompt_tokens=8)
    assert work.batch == 10  # 1500 video frames / 150 per utterance
    assert work.frames == {"audio": 300, "video": 150} and work.window_positions == 1500
    assert work.llm_tokens == 1 + (2 + 75) + (2 + 75) + 8 + 24 + 1
    with pytest.raises(ValueError, match="window"):
        flop_module.make_workload("asr", flop_module.PAPER, seconds=31.0, max_frames=10_000, prompt_tokens=8)


def test_out_of_memory_is_recorded_and_the_run_goes_on(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_configuration = bench.run_configuration

    def asr_runs_out_of_memory(llm_name, work, *args):
        if work.task == "asr":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return run_configuration(llm_name, work, *args)

    monkeypatch.setattr(bench, "run_configuration", asr_runs_out_of_memory)
    out = tmp_path / "bench.json"
    args = [
        "--smoke",
        "--llm",
        "1b",
        "--tasks",
        "asr,vsr",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--out",
        str(out),
    ]
    report = bench.main(args)
    rows = {row["task"]: row for row in report["configurations"]}
    assert rows["asr"]["status"] == "out of memory" and "9.00 GiB" in rows["asr"]["error"]
    assert rows["vsr"]["status"] == "ok"
    assert "| out of memory |" in out.with_suffix(".md").read_text(encoding="utf-8")
