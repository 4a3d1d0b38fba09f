"""Figures of the sink analysis, drawn from the saved arrays alone (``results/analysis/<exp>/arrays.npz``,
written by ``avsr_sinks.analysis.metrics.write_analysis``), so they are redrawn without running any model.

- ``sink_figure``: the paper's three panels (PAPER.md section 1): the segment-labelled attention map, a
  3-D bar plot of |hidden state| by token x feature, and the cosine with BOS across layers for an
  intermediate sink and a non-sink token.
- ``topk_figure``: the top-1/2/3 magnitudes and the median per layer, with the massive thresholds.
- ``sink_count_figure``: BOS sink share and intermediate sink count per layer, one bar per method.
- ``method_panels_figure``: the three panels of one setting's methods, one row per method, so baseline,
  decorrelation and ACT are read side by side on the same utterance.
- ``topk_by_method_figure``: the top-1 magnitude and the median per layer, one colour per method.

Each writes ``<out>.png`` and ``<out>.pdf`` atomically. Drawing goes through matplotlib's object API on
Agg canvases, so no pyplot state is shared between figures or with the caller.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure

from avsr_sinks.io import atomic_path, write_json_atomic
from avsr_sinks.modeling.segments import Segment
from avsr_sinks.settings.grid import parse_name

PathLike = str | os.PathLike[str]

# One colour per method in every figure of the report.
METHOD_COLOURS = {"baseline": "#4C72B0", "decorr": "#DD8452", "act": "#55A868"}
SPAN_NAMES = {
    Segment.BOS: "BOS",
    Segment.AUDIO: "Audio",
    Segment.VIDEO: "Video",
    Segment.PROMPT: "INST",
    Segment.RESPONSE: "Response",
    Segment.DELIMITER: "Delim",
}
DELIMITER_SPANS = {
    "<audio>": Segment.AUDIO,
    "</audio>": Segment.AUDIO,
    "<video>": Segment.VIDEO,
    "</video>": Segment.VIDEO,
}
SINK_KEYS = (
    "attention",
    "segments",
    "token_labels",
    "hidden_abs",
    "cosine_bos",
    "attention_layer",
    "hidden_layer",
    "sink_token",
    "nonsink_token",
    "utterance",
)
TOPK_KEYS = ("topk", "median", "thresholds")
COUNT_KEYS = ("bos_sink_share", "intermediate_sink_count")
MAX_BARS = (40, 48)  # tokens x features of the 3-D plot; bigger outputs are max-pooled into bins


def load_arrays(path: PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an analysis npz; a missing file or key is a ValueError naming both."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no analysis arrays; run the analyze rule for this experiment first")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in keys if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path}: missing array(s) {missing} (has {sorted(npz.files)}); it was written by an older "
                "analysis, rerun the analyze rule"
            )
        return {k: npz[k] for k in keys}


def _save(fig: Figure, out: PathLike) -> tuple[Path, Path]:
    """``out`` without its .png/.pdf suffix -> (png, pdf), each written atomically."""
    stem = Path(out)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    FigureCanvasAgg(fig)
    paths = []
    for fmt in ("png", "pdf"):
        final = stem.parent / f"{stem.name}.{fmt}"
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(final)
    return paths[0], paths[1]


def segment_spans(segments: np.ndarray, token_labels: np.ndarray) -> list[tuple[str, int, int]]:
    """(name, start, end) runs of the paper's spans BOS | Audio | Video | INST | Response; a modality's
    delimiters belong to its span (by label when known, else by the feature tokens beside them)."""
    kinds = [Segment(int(s)) for s in segments]
    spans = []
    for j, kind in enumerate(kinds):
        if kind == Segment.DELIMITER:
            label = str(token_labels[j]) if j < len(token_labels) else ""
            after = kinds[j + 1] if j + 1 < len(kinds) else None
            before = kinds[j - 1] if j > 0 else None
            kind = DELIMITER_SPANS.get(label) or next(
                (k for k in (after, before) if k in (Segment.AUDIO, Segment.VIDEO)), Segment.DELIMITER
            )
        name = SPAN_NAMES.get(kind, kind.name.lower())
        if spans and spans[-1][0] == name and spans[-1][2] == j:
            spans[-1] = (name, spans[-1][1], j + 1)
        else:
            spans.append((name, j, j + 1))
    return spans


def _token_name(j: int, segments: np.ndarray, labels: np.ndarray) -> str:
    label = str(labels[j]) if j < len(labels) and str(labels[j]) else ""
    return f"position {j} ({Segment(int(segments[j])).name.lower()}{' ' + label if label else ''})"


def _attention_panel(fig: Figure, ax, a: Mapping[str, np.ndarray]) -> None:
    attention = a["attention"].astype(np.float64)
    n = attention.shape[0]
    shown = np.where(np.tril(np.ones((n, n), dtype=bool)), attention, np.nan)  # causal: upper half unused
    image = ax.imshow(shown, cmap="viridis", norm=PowerNorm(0.5, vmin=0.0, vmax=max(np.nanmax(shown), 1e-6)))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight (mean over heads)")
    spans = segment_spans(a["segments"], a["token_labels"])
    centres = [(start + end - 1) / 2 for _, start, end in spans]
    names = [name for name, _, _ in spans]
    ax.set_xticks(centres, names, rotation=45, ha="right")
    ax.set_yticks(centres, names)
    for _, start, _ in spans[1:]:
        ax.axvline(start - 0.5, color="white", lw=0.6, alpha=0.8)
        ax.axhline(start - 0.5, color="white", lw=0.6, alpha=0.8)
    sink = int(a["sink_token"])
    if 0 <= sink < n:  # flag the intermediate sink's column above the map
        ax.plot(sink, -0.5, marker="v", color="#C44E52", ms=7, clip_on=False, label=f"sink, position {sink}")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel("key token (by segment)")
    ax.set_ylabel("query token (by segment)")
    ax.set_title(f"Attention map, layer {int(a['attention_layer'])}")


def _pool(values: np.ndarray, bins: int, axis: int) -> tuple[np.ndarray, int]:
    """Max over consecutive blocks along ``axis`` so that at most ``bins`` remain (spikes survive)."""
    width = -(-values.shape[axis] // bins)
    if width == 1:
        return values, 1
    pad = (-values.shape[axis]) % width
    padding = [(0, 0), (0, 0)]
    padding[axis] = (0, pad)
    values = np.pad(values, padding)
    shape = (values.shape[0] // width, width, values.shape[1]) if axis == 0 else (values.shape[0], -1, width)
    return values.reshape(shape).max(axis=1 if axis == 0 else 2), width


def _hidden_panel(ax, a: Mapping[str, np.ndarray]) -> None:
    magnitude, token_bin = _pool(a["hidden_abs"].astype(np.float64), MAX_BARS[0], axis=0)
    magnitude, feature_bin = _pool(magnitude, MAX_BARS[1], axis=1)
    tokens, features = np.meshgrid(
        np.arange(magnitude.shape[0]) * token_bin, np.arange(magnitude.shape[1]) * feature_bin, indexing="ij"
    )
    height = magnitude.ravel()
    colours = colormaps["viridis"](Normalize(0, max(height.max(), 1e-6))(height))
    ax.bar3d(
        features.ravel(),
        tokens.ravel(),
        0,
        0.8 * feature_bin,
        0.8 * token_bin,
        height,
        color=colours,
        shade=True,
        # Thousands of shaded faces: as vectors they doubled the PDF and made writing it most of the
        # figures job's time; rasterized at the figure's dpi they look the same.
        rasterized=True,
    )
    ax.set_xlabel("feature index")
    ax.set_ylabel("token position")
    ax.set_zlabel("|h| (a.u.)", labelpad=8)
    pooled = f" (max over {token_bin} tok x {feature_bin} feat)" if token_bin * feature_bin > 1 else ""
    ax.set_title(f"|Hidden state|, layer {int(a['hidden_layer'])} output{pooled}")


def _cosine_panel(ax, a: Mapping[str, np.ndarray]) -> None:
    cosine = a["cosine_bos"]
    layers = np.arange(cosine.shape[0])
    for key, colour, kind in (("sink_token", "#C44E52", "sink"), ("nonsink_token", "#8C8C8C", "non-sink")):
        j = int(a[key])
        if 0 <= j < cosine.shape[1]:
            name = _token_name(j, a["segments"], a["token_labels"])
            ax.plot(layers, cosine[:, j], marker="o", color=colour, label=f"{kind}: {name}")
        else:
            ax.plot([], [], color=colour, label=f"{kind}: none in this utterance")
    ax.set_xticks(layers)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("cosine similarity with BOS")
    ax.set_title("Cosine with the BOS hidden state")
    ax.legend(fontsize="small", loc="lower left")


def sink_figure(arrays: PathLike, out: PathLike, title: str | None = None) -> tuple[Path, Path]:
    """The paper's three-panel figure for the analysed utterance of one experiment -> (png, pdf)."""
    a = load_arrays(arrays, SINK_KEYS)
    fig = Figure(figsize=(19, 5.6))
    fig.subplots_adjust(wspace=0.38)  # room for the 3-D panel's z label
    _attention_panel(fig, fig.add_subplot(1, 3, 1), a)
    _hidden_panel(fig.add_subplot(1, 3, 2, projection="3d"), a)
    _cosine_panel(fig.add_subplot(1, 3, 3), a)
    name = title or Path(arrays).parent.name
    fig.suptitle(f"Attention sinks and massive activations: {name} (utterance {int(a['utterance'])})")
    return _save(fig, out)


def topk_figure(arrays: PathLike, out: PathLike, title: str | None = None) -> tuple[Path, Path]:
    """Top-1/2/3 |h| of each layer's output against its median and the massive thresholds -> (png, pdf)."""
    a = load_arrays(arrays, TOPK_KEYS)
    topk, median = a["topk"].astype(np.float64), a["median"].astype(np.float64)
    _, massive_abs, massive_ratio = (float(x) for x in a["thresholds"])
    layers = np.arange(topk.shape[0])
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    floor = 1e-6  # a log axis cannot show 0
    for k, marker in zip(range(topk.shape[1]), "os^", strict=False):
        ax.plot(layers, np.maximum(topk[:, k], floor), marker=marker, label=f"top-{k + 1}")
    ax.plot(layers, np.maximum(median, floor), ls="--", color="black", label="median")
    ax.plot(
        layers,
        np.maximum(massive_ratio * median, floor),
        ls=":",
        color="grey",
        label=f"{massive_ratio:g} x median",
    )
    if massive_abs > 0:
        ax.axhline(massive_abs, ls="-.", color="#C44E52", lw=1, label=f"|h| = {massive_abs:g}")
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("|h| of the layer output (a.u., log scale)")
    ax.set_title(f"Largest activation magnitudes per layer: {title or Path(arrays).parent.name}")
    ax.legend(fontsize="small")
    return _save(fig, out)


def sink_count_figure(
    arrays_by_method: Mapping[str, PathLike], out: PathLike, title: str = "Attention sinks per layer"
) -> tuple[Path, Path]:
    """BOS sink share and intermediate sink count per layer, one bar per method -> (png, pdf)."""
    methods = _ordered_methods(arrays_by_method)
    data = {m: load_arrays(arrays_by_method[m], COUNT_KEYS) for m in methods}
    depths = {m: len(d["bos_sink_share"]) for m, d in data.items()}
    if len(set(depths.values())) != 1:
        raise ValueError(f"the methods' analyses have different layer counts {depths}; compare one LLM")
    layers = np.arange(next(iter(depths.values())))
    width = 0.8 / len(methods)
    fig = Figure(figsize=(11, 4.2))
    share_ax, count_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, method in enumerate(methods):
        x = layers - 0.4 + width * (i + 0.5)
        colour = METHOD_COLOURS[method]
        share_ax.bar(x, 100 * data[method]["bos_sink_share"], width, color=colour, label=method)
        count_ax.bar(x, data[method]["intermediate_sink_count"], width, color=colour, label=method)
    share_ax.set_ylim(0, 100)
    share_ax.set_ylabel("heads where BOS is a sink (%)")
    share_ax.set_title("BOS sink share")
    count_ax.set_ylabel("intermediate sink tokens per utterance")
    count_ax.set_title("Intermediate sinks (tokens j > 0)")
    for ax in (share_ax, count_ax):
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return _save(fig, out)


def _ordered_methods(arrays_by_method: Mapping[str, PathLike]) -> list[str]:
    unknown = sorted(set(arrays_by_method) - set(METHOD_COLOURS))
    if unknown or not arrays_by_method:
        raise ValueError(f"methods must be some of {list(METHOD_COLOURS)}, got {list(arrays_by_method)}")
    return [m for m in METHOD_COLOURS if m in arrays_by_method]


def method_panels_figure(
    arrays_by_method: Mapping[str, PathLike], out: PathLike, title: str
) -> tuple[Path, Path]:
    """The paper's three panels for each method of one setting, a row per method -> (png, pdf)."""
    methods = _ordered_methods(arrays_by_method)
    fig = Figure(figsize=(19, 5.6 * len(methods)))
    fig.subplots_adjust(wspace=0.38, hspace=0.45)
    for row, method in enumerate(methods):
        a = load_arrays(arrays_by_method[method], SINK_KEYS)
        axes = (
            fig.add_subplot(len(methods), 3, 3 * row + 1),
            fig.add_subplot(len(methods), 3, 3 * row + 2, projection="3d"),
            fig.add_subplot(len(methods), 3, 3 * row + 3),
        )
        _attention_panel(fig, axes[0], a)
        _hidden_panel(axes[1], a)
        _cosine_panel(axes[2], a)
        for ax in axes:
            ax.set_title(f"{method}: {ax.get_title()}", color=METHOD_COLOURS[method])
    fig.suptitle(title)
    return _save(fig, out)


def topk_by_method_figure(
    arrays_by_method: Mapping[str, PathLike], out: PathLike, title: str
) -> tuple[Path, Path]:
    """Top-1 |h| (solid) and the median (dashed) of each layer's output, one colour per method."""
    methods = _ordered_methods(arrays_by_method)
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    floor = 1e-6  # a log axis cannot show 0
    for method in methods:
        a = load_arrays(arrays_by_method[method], TOPK_KEYS)
        layers = np.arange(a["topk"].shape[0])
        colour = METHOD_COLOURS[method]
        ax.plot(layers, np.maximum(a["topk"][:, 0], floor), marker="o", color=colour, label=f"{method} top-1")
        ax.plot(layers, np.maximum(a["median"], floor), ls="--", color=colour, label=f"{method} median")
        ax.set_xticks(layers)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("|h| of the layer output (a.u., log scale)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, out)


def draw_all(arrays_files: Sequence[PathLike], out_dir: PathLike) -> list[Path]:
    """Every figure of a run from its analyses (``results/analysis/<experiment>/arrays.npz``): per
    experiment the three-panel figure and the top-k magnitudes, and per (task, rates, seed) its methods
    side by side: sink counts, the three panels a row per method, and top-1 magnitudes. Returns the
    files written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    groups: dict[str, dict[str, Path]] = {}
    for path in map(Path, arrays_files):
        experiment = parse_name(path.parent.name)
        written += sink_figure(path, out_dir / f"{experiment.name}-sinks")
        written += topk_figure(path, out_dir / f"{experiment.name}-topk")
        setting = f"{experiment.task}-{experiment.rates}-s{experiment.seed}"
        groups.setdefault(setting, {})[experiment.method] = path
    for setting, by_method in sorted(groups.items()):
        ordered = {m: by_method[m] for m in METHOD_COLOURS if m in by_method}
        title = f"Attention sinks per layer: {setting}"
        written += sink_count_figure(ordered, out_dir / f"{setting}-sink-counts", title=title)
        title = f"Attention sinks and massive activations by method: {setting}"
        written += method_panels_figure(ordered, out_dir / f"{setting}-methods", title)
        title = f"Largest activation per layer by method: {setting}"
        written += topk_by_method_figure(ordered, out_dir / f"{setting}-topk-by-method", title)
    return written


def write_index(index: PathLike, figures: Sequence[Path]) -> None:
    """The list of the figures a run drew (the figures rule's declared output)."""
    write_json_atomic(Path(index), {"figures": sorted(str(f) for f in figures)})
