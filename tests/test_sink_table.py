"""The sinks table reads each analysis the way its note says: BOS share over layers 2 to L-2, sinks and
cosines by segment group, massive activations in all and away from BOS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsr_sinks.analysis.metrics import analyze_batch
from avsr_sinks.report.tables import bos_share_layers, collect_sinks
from tests.test_analysis_sinks import batch, utterance


def write_metrics(folder: Path, metrics: dict) -> Path:
    folder.mkdir(parents=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path


def test_planted_analysis_reads_into_the_table(tmp_path: Path) -> None:
    metrics, _ = analyze_batch(**batch([utterance()]))
    metrics["layers"][1]["by_group"]["modality"]["cosine_bos_sink"] = -1.0  # before COSINE_FROM_LAYER
    row = collect_sinks([write_metrics(tmp_path / "asr-a4-baseline-s0", metrics)]).iloc[0]
    assert row["bos_sink_share_percent"] == 75.0  # three layers: 1 and 2 count, each 3 of 4 heads
    # BOS and </audio> carry the massive entries; their summed scores pass 0.3 in every head of 1 and 2
    assert row["massive_token_sink_share_percent"] == 100.0
    assert (row["sinks_modality"], row["sinks_prompt"], row["sinks_response"]) == (1.0, 0.0, 0.0)
    assert (row["massive_activations"], row["massive_non_bos"]) == (3, 1)
    assert row["cosine_bos_modality_sink"] > 0.99 and abs(row["cosine_bos_modality_nonsink"]) < 0.5


def test_bos_share_is_the_mean_over_layers_two_to_l_minus_two(tmp_path: Path) -> None:
    metrics, _ = analyze_batch(**batch([utterance()]))
    shares = [1.0, 1.0, 0.5, 0.25, 0.75, 0.0]  # layers 0-1 and the last must not count
    layer = metrics["layers"][0]
    metrics["layers"] = [{**layer, "layer": i, "bos_sink_share": s} for i, s in enumerate(shares)]
    row = collect_sinks([write_metrics(tmp_path / "vsr-v2-baseline-s0", metrics)]).iloc[0]
    assert row["bos_sink_share_percent"] == pytest.approx(50.0)
    assert list(bos_share_layers(30)) == list(range(2, 29))
