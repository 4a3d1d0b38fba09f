"""Sink figures drawn from saved analysis arrays alone: the files are written, and each figure shows the
panels, segments, marks and data values of the arrays it was drawn from."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from avsr_sinks.analysis.capture import write_analysis
from avsr_sinks.analysis.metrics import analyze_batch
from avsr_sinks.modeling.segments import Segment
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
from tests.test_analysis_sinks import CLOSE_AUDIO, LABELS, SEGMENTS, batch, utterance

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


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every matplotlib Figure saved while the test runs, in order (once each, though saved twice)."""
    figures: list[Figure] = []
    real_savefig = Figure.savefig

    def remembering_savefig(fig: Figure, *args, **kwargs):
        if not any(f is fig for f in figures):
            figures.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", remembering_savefig)
    return figures


def panels(fig: Figure) -> list[Axes]:
    """The figure's plotting axes, without colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def legend_labels(ax: Axes) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def check_sink_panels(axes: list[Axes], a: Mapping[str, np.ndarray]) -> None:
    """The paper's three panels show the arrays of ``a``: the causal attention map with its BOS column and
    segment spans, one 3-D bar per (token, feature) up to the largest |h|, and the BOS cosines."""
    attention_ax, hidden_ax, cosine_ax = axes
    assert attention_ax.get_title().endswith(f"Attention map, layer {int(a['attention_layer'])}")
    (image,) = attention_ax.images
    shown = np.ma.filled(image.get_array().astype(np.float64), np.nan)
    n = len(a["segments"])
    causal = np.tril(np.ones((n, n), dtype=bool))
    np.testing.assert_allclose(shown[causal], a["attention"][causal], rtol=1e-6)
    assert np.isnan(shown[~causal]).all()
    assert (shown[:, 0] > 0).all()  # the BOS column: every query attends to BOS
    spans = segment_spans(a["segments"], a["token_labels"])
    names = [name for name, _, _ in spans]
    assert [t.get_text() for t in attention_ax.get_xticklabels()] == names
    assert [t.get_text() for t in attention_ax.get_yticklabels()] == names
    # The span boundaries: axvline / axhline, two points at one x (resp. y) in data coordinates.
    segments = [
        (line.get_xdata(), line.get_ydata()) for line in attention_ax.lines if len(line.get_xdata()) == 2
    ]
    vertical = sorted(x[0] for x, _ in segments if x[0] == x[1])
    horizontal = sorted(y[0] for _, y in segments if y[0] == y[1])
    assert vertical == horizontal == [start - 0.5 for _, start, _ in spans[1:]]
    sink = int(a["sink_token"])
    if sink >= 0:
        assert any(list(line.get_xdata()) == [sink] for line in attention_ax.lines), "no sink marker"

    assert "|Hidden state|" in hidden_ax.get_title()
    assert f"layer {int(a['hidden_layer'])}" in hidden_ax.get_title()
    bars = [c for c in hidden_ax.collections if isinstance(c, Poly3DCollection)]
    n_tokens, n_features = a["hidden_abs"].shape
    assert sum(len(c.get_paths()) for c in bars) == 6 * n_tokens * n_features  # 6 faces per bar
    assert hidden_ax.get_zlim()[1] >= a["hidden_abs"].max() > 0

    assert cosine_ax.get_title() == "Cosine with the BOS hidden state"
    curves = {
        line.get_label(): line for line in cosine_ax.lines if line.get_label().startswith(("sink", "non"))
    }
    for key, kind in (("sink_token", "sink"), ("nonsink_token", "non-sink")):
        j = int(a[key])
        (label,) = [name for name in curves if name.startswith(f"{kind}:")]
        if j >= 0:
            assert label.startswith(f"{kind}: position {j} (")
            np.testing.assert_allclose(curves[label].get_ydata(), a["cosine_bos"][:, j])
        else:
            assert label == f"{kind}: none in this utterance"


def test_every_figure_draws_from_the_arrays(analysed: Path, tmp_path: Path, drawn: list[Figure]) -> None:
    figures = tmp_path / "figures"
    check_written(*sink_figure(analysed, figures / "sinks"))
    check_written(*topk_figure(analysed, figures / "topk.png"))
    assert (figures / "topk.pdf").is_file()
    check_written(
        *sink_count_figure({"decorr": analysed, "baseline": analysed, "act": analysed}, figures / "c")
    )
    assert len(drawn) == 3
    with np.load(analysed) as npz:
        a = dict(npz)
    sinks, topk, counts = drawn

    check_sink_panels(panels(sinks), a)
    assert int(a["sink_token"]) == CLOSE_AUDIO  # the planted sink is the one the figure flags
    assert sinks.get_suptitle().startswith("Attention sinks and massive activations: avsr-a16v5-baseline-s0")

    (ax,) = panels(topk)
    assert ax.get_yscale() == "log" and "avsr-a16v5-baseline-s0" in ax.get_title()
    lines = {line.get_label(): np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines}
    sink_eps, massive_abs, massive_ratio = a["thresholds"].tolist()
    for k in range(3):
        np.testing.assert_allclose(lines[f"top-{k + 1}"], np.maximum(a["topk"][:, k], 1e-6), rtol=1e-6)
    np.testing.assert_allclose(lines["median"], a["median"], rtol=1e-6)
    np.testing.assert_allclose(lines[f"{massive_ratio:g} x median"], massive_ratio * a["median"], rtol=1e-6)
    assert set(lines[f"|h| = {massive_abs:g}"]) == {massive_abs}

    share_ax, count_ax = panels(counts)
    layers = len(a["bos_sink_share"])
    for axis, values in ((share_ax, 100 * a["bos_sink_share"]), (count_ax, a["intermediate_sink_count"])):
        assert legend_labels(axis) == ["baseline", "decorr", "act"]  # the report's method order
        heights = np.array([bar.get_height() for bar in axis.patches]).reshape(3, layers)
        np.testing.assert_allclose(heights, np.tile(values, (3, 1)), rtol=1e-6)
    assert share_ax.get_title() == "BOS sink share" and share_ax.get_ylim() == (0, 100)
    assert count_ax.get_title() == "Intermediate sinks (tokens j > 0)"
    assert count_ax.patches[layers - 1].get_height() == 1  # the planted intermediate sink, last layer


def test_methods_of_a_setting_are_drawn_side_by_side(
    analysed: Path, tmp_path: Path, drawn: list[Figure]
) -> None:
    by_method = {"act": analysed, "baseline": analysed}
    check_written(*method_panels_figure(by_method, tmp_path / "panels", "setting"))
    check_written(*topk_by_method_figure(by_method, tmp_path / "topk", "setting"))
    with pytest.raises(ValueError, match="methods must be some of"):
        method_panels_figure({"ctc": analysed}, tmp_path / "bad", "setting")
    with np.load(analysed) as npz:
        a = dict(npz)
    rows, topk = drawn[:2]

    axes = panels(rows)
    assert len(axes) == 6 and rows.get_suptitle() == "setting"
    for row, method in enumerate(["baseline", "act"]):  # one row per method, in the report's order
        row_axes = axes[3 * row : 3 * row + 3]
        assert all(ax.get_title().startswith(f"{method}: ") for ax in row_axes)
        for ax in row_axes:
            ax.set_title(ax.get_title().removeprefix(f"{method}: "))
        check_sink_panels(row_axes, a)

    (ax,) = panels(topk)
    assert ax.get_title() == "setting" and ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines) == ["baseline top-1", "baseline median", "act top-1", "act median"]
    for method in ("baseline", "act"):
        np.testing.assert_allclose(lines[f"{method} top-1"].get_ydata(), a["topk"][:, 0], rtol=1e-6)
        np.testing.assert_allclose(lines[f"{method} median"].get_ydata(), a["median"], rtol=1e-6)
        assert lines[f"{method} top-1"].get_color() == METHOD_COLOURS[method]


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


def test_large_hidden_state_is_pooled_and_missing_sinks_are_drawn(
    tmp_path: Path, drawn: list[Figure]
) -> None:
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
    (fig,) = drawn
    attention_ax, hidden_ax, cosine_ax = panels(fig)
    # 120 tokens x 2048 features are max-pooled into at most 40 x 48 bars, and the spike survives it.
    assert "(max over 3 tok x 43 feat)" in hidden_ax.get_title()
    bars = sum(len(c.get_paths()) for c in hidden_ax.collections if isinstance(c, Poly3DCollection))
    assert bars == 6 * 40 * 48
    assert hidden_ax.get_zlim()[1] >= 900.0
    assert legend_labels(cosine_ax) == ["sink: none in this utterance", "non-sink: position 5 (audio)"]
    assert not any(list(line.get_xdata()) == [-1] for line in attention_ax.lines)  # no sink to mark
    assert fig.get_suptitle() == "Attention sinks and massive activations: synthetic (utterance 0)"


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
