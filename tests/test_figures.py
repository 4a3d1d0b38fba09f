"""Sink figures drawn from saved analysis arrays alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsr_sinks.analysis import analyze_batch
from avsr_sinks.capture import write_analysis
from avsr_sinks.model import Segment
from avsr_sinks.report.figures import (
    METHOD_COLOURS,
    draw_all,
    method_panels_figure,
    segment_spans,
    sink_count_figure,
    sink_figure,
    topk_by_method_figure,
    topk_figure,
)
from tests.test_analysis_sinks import LABELS, SEGMENTS, batch, utterance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def analysed(tmp_path: Path) -> Path:
    """results/analysis/<exp>/arrays.npz of the planted-sink batch."""
    metrics, arrays = analyze_batch(**batch([utterance()]))
    _, npz = write_analysis(tmp_path / "analysis" / "avsr-a16v5-baseline-s0", metrics, arrays)
    return npz


def check_written(png: Path, pdf: Path) -> None:
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert not [p for p in png.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_every_figure_draws_from_the_arrays(analysed: Path, tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    check_written(*sink_figure(analysed, figures / "sinks"))
    check_written(*topk_figure(analysed, figures / "topk.png"))
    assert (figures / "topk.pdf").is_file()
    check_written(
        *sink_count_figure({"decorr": analysed, "baseline": analysed, "act": analysed}, figures / "c")
    )


def test_methods_of_a_setting_are_drawn_side_by_side(analysed: Path, tmp_path: Path) -> None:
    by_method = {"act": analysed, "baseline": analysed}
    check_written(*method_panels_figure(by_method, tmp_path / "panels", "setting"))
    check_written(*topk_by_method_figure(by_method, tmp_path / "topk", "setting"))
    with pytest.raises(ValueError, match="methods must be some of"):
        method_panels_figure({"ctc": analysed}, tmp_path / "bad", "setting")


def test_draw_all_gives_every_experiment_and_setting_its_figures(analysed: Path, tmp_path: Path) -> None:
    decorr = tmp_path / "analysis" / "avsr-a16v5-decorr-s0" / "arrays.npz"
    decorr.parent.mkdir(parents=True)
    decorr.write_bytes(analysed.read_bytes())
    written = draw_all([analysed, decorr], tmp_path / "figures")
    stems = {p.stem for p in written}
    assert stems == {
        *(f"avsr-a16v5-{m}-s0-{kind}" for m in ("baseline", "decorr") for kind in ("sinks", "topk")),
        *(f"avsr-a16v5-s0-{kind}" for kind in ("sink-counts", "methods", "topk-by-method")),
    }
    assert {p.suffix for p in written} == {".png", ".pdf"} and len(written) == 2 * len(stems)


def test_large_hidden_state_is_pooled_and_missing_sinks_are_drawn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, layers, hidden = 120, 4, 2048
    segments = np.array([Segment.BOS] + [Segment.AUDIO] * 80 + [Segment.PROMPT] * 9 + [Segment.RESPONSE] * 30)
    hidden_abs = np.abs(rng.standard_normal((n, hidden))).astype(np.float32)
    hidden_abs[0, 1234] = 900.0
    arrays = {
        "attention": np.tril(rng.random((n, n))).astype(np.float32),
        "segments": segments,
        "token_labels": np.array([""] * n),
        "hidden_abs": hidden_abs,
        "cosine_bos": rng.uniform(-1, 1, (layers, n)).astype(np.float32),
        "attention_layer": np.array(1),
        "hidden_layer": np.array(2),
        "sink_token": np.array(-1),
        "nonsink_token": np.array(5),
        "utterance": np.array(0),
    }
    np.savez(tmp_path / "arrays.npz", **arrays)
    check_written(*sink_figure(tmp_path / "arrays.npz", tmp_path / "big", title="synthetic"))


def test_missing_array_names_key_and_file(analysed: Path, tmp_path: Path) -> None:
    with np.load(analysed) as npz:
        kept = {k: npz[k] for k in npz.files if k != "cosine_bos"}
    broken = tmp_path / "broken.npz"
    np.savez(broken, **kept)
    with pytest.raises(ValueError, match="cosine_bos") as error:
        sink_figure(broken, tmp_path / "x")
    assert str(broken) in str(error.value)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        topk_figure(tmp_path / "nowhere.npz", tmp_path / "y")
    with pytest.raises(ValueError, match="baseline"):
        sink_count_figure({"mystery": analysed}, tmp_path / "z")
    assert not list(tmp_path.glob("[xyz].*"))


def test_segment_spans_follow_the_paper_layout() -> None:
    spans = segment_spans(np.array(SEGMENTS), np.array(LABELS))
    assert spans == [("BOS", 0, 1), ("Audio", 1, 5), ("INST", 5, 7), ("Response", 7, 10)]
    # Without labels, a delimiter joins the feature tokens beside it.
    assert segment_spans(np.array(SEGMENTS), np.array([""] * len(SEGMENTS)))[1] == ("Audio", 1, 5)
    assert set(METHOD_COLOURS) == {"baseline", "decorr", "act"}
