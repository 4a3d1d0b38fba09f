"""Every results table on one HTML page: Snakemake's report offers a CSV only as a download, and shows an
HTML file in its own view, so this page is how the report shows the tables."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from avsr_sinks.io import write_text_atomic

# Titles by file stem, in the order the page shows them.
TITLES = {
    "main": "Main result: WER (%) on clean test audio",
    "robustness": "WER (%) against signal-to-noise ratio",
    "paper_vs_reproduced": "Published WERs beside the reproduced ones",
    "claims": "The paper's claims, each read by a stated criterion",
    "sinks": "Attention sinks and massive activations per experiment",
    "wer": "WER per experiment and condition",
}

STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:2em}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
)


def tables_page(tables: Sequence[Path]) -> str:
    """The HTML page of ``tables`` (CSV files named as in TITLES), in TITLES' order."""
    by_stem = {Path(path).stem: Path(path) for path in tables}
    unknown = sorted(set(by_stem) - set(TITLES))
    if unknown:
        raise ValueError(f"no title for the tables {unknown}; add them to TITLES")
    sections = [
        f"<h2>{html.escape(title)}</h2>\n<p>{html.escape(str(by_stem[stem]))}</p>\n"
        + pd.read_csv(by_stem[stem]).to_html(index=False, na_rep="", border=0)
        for stem, title in TITLES.items()
        if stem in by_stem
    ]
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>Tables</title><style>{STYLE}</style>'
        "</head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def write_tables_page(tables: Sequence[Path], out: Path) -> None:
    write_text_atomic(out, tables_page(tables))
