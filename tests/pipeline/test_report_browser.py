"""The HTML report in a real browser (headless Chromium, which `.ci/run` installs from Debian's packages):
the menu lists the tables and figures, the tables page renders its tables, and a figure renders as an
image with drawn pixels. The report's own app is driven through its view function, as its buttons are."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page: Path, *flags: str) -> str:
    """Chromium's output for ``page`` after its scripts ran: with --dump-dom the rendered DOM, the text of
    its scripts and styles left out (the report embeds its data there, so only rendered elements count)."""
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000"]
    done = subprocess.run(
        [*command, "--window-size=1400,1000", *flags, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return re.sub(r"<(script|style)\b.*?</\1>", "", done.stdout, flags=re.DOTALL)


def driven(report: Path, view: dict[str, str] | None, name: str) -> Path:
    """A copy of the report that opens ``view`` once its app has started (None: the start page)."""
    page = report.with_name(name)
    # The app object exists once React has rendered it, which may follow the load event.
    opener = (
        f"const view = {json.dumps(view)};"
        "const open = () => (typeof app !== 'undefined' && app ? app.setView(view) : setTimeout(open, 50));"
        "window.addEventListener('load', open);"
    )
    script = "" if view is None else f"<script>{opener}</script>"
    # Before the last </body>: the report's embedded libraries hold the string too.
    head, body_end, tail = report.read_text().rpartition("</body>")
    page.write_text(head + script + body_end + tail)
    return page


def decoded(data_uri: str) -> bytes:
    header, _, payload = data_uri.partition(",")
    return base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode()


@pytest.fixture(scope="session")
def browser() -> str:
    """Chromium, checked before the report is built; where it is missing the tests skip, and under CI fail."""
    if BROWSER is None:
        reason = "no chromium on PATH (`.ci/run` installs Debian's chromium package)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI must run the browser test")
        pytest.skip(reason)
    return BROWSER


@pytest.fixture(scope="module")
def report(browser: str, ci_report: Path) -> tuple[Path, dict]:
    results = json.loads(re.search(r"var results = (\{.*?\});\n", ci_report.read_text(), re.DOTALL).group(1))
    return ci_report, results


@pytest.mark.slow
def test_the_menu_lists_the_tables_and_figures(report: tuple[Path, dict], tmp_path: Path) -> None:
    dom = browse(
        driven(report[0], {"navbarMode": "category", "category": "Tables"}, "menu.html"), "--dump-dom"
    )
    for subcategory in ("WER", "Sinks", "All tables"):
        assert subcategory in dom, f"the Tables menu does not show {subcategory}"
    start = browse(driven(report[0], None, "start.html"), "--dump-dom")
    assert "Tables" in start and "Figures" in start


@pytest.mark.slow
def test_the_tables_page_shows_every_table(report: tuple[Path, dict], ci_run: tuple[Path, str]) -> None:
    path, results = report
    key = next(k for k in results if k.endswith("tables/index.html"))
    entry = results[key]
    dom = browse(
        driven(path, {"content": "html", "contentPath": entry["data_uri"], "resultPath": key}, "t.html"),
        "--dump-dom",
    )
    frames = re.findall(r'<iframe[^>]+src="([^"]+)"', dom)
    assert len(frames) == 1, "the tables page is shown in one frame"
    page = decoded(frames[0].replace("&amp;", "&")).decode()
    assert page.count("<table") == 6 and "Main result" in page and "claims" in page
    wer = pd.read_csv(ci_run[0] / "results/tables/wer.csv")
    assert str(wer["experiment"].iloc[0]) in page
    # The page as the frame renders it: its tables have cells.
    framed = path.with_name("tables-page.html")
    framed.write_text(page)
    assert browse(framed, "--dump-dom").count("<td") >= len(wer)


@pytest.mark.slow
def test_a_figure_renders_as_an_image_with_drawn_pixels(report: tuple[Path, dict], tmp_path: Path) -> None:
    path, results = report
    key = next(k for k in results if k.endswith("-sinks.png"))
    view = {"content": "img", "contentPath": results[key]["data_uri"], "resultPath": key}
    page = driven(path, view, "figure.html")
    dom = browse(page, "--dump-dom")
    assert re.search(r'<img[^>]+src="data:image/png', dom), "the figure view holds no image"
    shot = tmp_path / "figure.png"
    browse(page, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = np.unique(pixels // 16, axis=0)
    # The report around a blank image renders about 70 colour bins; the CI figure about 600.
    assert len(colours) > 300, f"the screenshot shows {len(colours)} colours"
