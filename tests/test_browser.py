"""The pages a researcher opens, checked in a real browser (Debian's chromium, driven by Playwright):
Snakemake's HTML report shows every row of both benchmark tables and every plot, and the page of
`dvc plots show` draws the per-epoch curves without internet (this machine has none)."""

from __future__ import annotations

import hashlib
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run
from tests.project_copy import copy_project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (`apt-get install chromium`; .ci/run installs it)"
)
# As the probe of this machine type starts it: no background connections to a network it does not have.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TABLES = ("results/tables/delays.html", "results/tables/pretrain.html")
PLOTS = (
    "results/plots/delays_training.png",
    "results/plots/delays_distribution.png",
    "results/plots/pretrain_time_accuracy.png",
)


class _Rows(HTMLParser):
    """The text of every table row of an HTML file, cells joined by single spaces."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _rows(path: Path) -> list[str]:
    parser = _Rows()
    parser.feed(path.read_text())
    return [" ".join(cells) for cells in parser.rows if cells]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _drawn_share(png: Path) -> float:
    """Share of a screenshot's pixels that are not the background colour."""
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    values, counts = np.unique(pixels, axis=0, return_counts=True)
    return 1.0 - counts.max() / counts.sum()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy holding the committed results (tables, plots, curves), as a fresh clone has them."""
    work = copy_project(tmp_path_factory.mktemp("browser"), commit=True)
    shutil.copytree(REPO / "results", work / "results", ignore=shutil.ignore_patterns("bench"))
    return work


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_the_snakemake_report_shows_every_table_row_and_every_plot(
    project: Path, browser, tmp_path: Path
) -> None:
    run(["snakemake", "--report", "results/report.html"], project, timeout=300)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto((project / "results/report.html").as_uri())
    page.click("text=Results")
    for table in TABLES:
        page.locator("tr", has_text=table).locator('a[iconname="eye"]').click()
        frame = next(f for f in page.frames if f"filename={Path(table).name}" in f.url)
        frame.wait_for_selector("table")
        shown = _flat(frame.inner_text("body"))
        rows = _rows(project / table)
        assert len(rows) >= 4
        for row in rows:
            assert _flat(row) in shown, f"{table}: row {row!r} not shown"
    for plot in PLOTS:
        page.locator("tr", has_text=plot).locator('a[iconname="eye"]').click()
        image = page.locator(f'img[src*="filename={Path(plot).name}"]')
        image.wait_for()
        width = image.evaluate("img => img.naturalWidth")
        assert width == Image.open(project / plot).width, f"{plot}: the report shows no image of it"
        shot = tmp_path / f"{Path(plot).stem}.png"
        image.screenshot(path=str(shot))
        assert _drawn_share(shot) > 0.02, f"{plot}: the rendered image is blank"
    page.close()


def test_dvc_plots_render_without_internet(project: Path, browser, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    run(["dvc", "plots", "show", "-o", str(out)], project, timeout=300)
    html = (out / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=\"https?://", html), "the page loads scripts from the internet"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto((out / "index.html").as_uri())
    canvases = page.locator("canvas.marks")
    canvases.first.wait_for(timeout=30_000)
    assert canvases.count() >= 1
    shot = tmp_path / "curve.png"
    canvases.first.screenshot(path=str(shot))
    assert _drawn_share(shot) > 0.02, "the first curve is blank"
    assert errors == []
    page.close()


def test_the_offline_template_holds_the_pinned_scripts() -> None:
    """The inlined scripts are byte for byte the files of the pinned npm packages (hashes in its README)."""
    template = (REPO / "workflow/plots/offline.html").read_text()
    readme = (REPO / "workflow/plots/README.md").read_text()
    pinned = re.findall(r"\| (vega[\w-]*) \| ([\d.]+) \| build/[\w.-]+ \| ([0-9a-f]{64}) \|", readme)
    scripts = re.findall(r"<script>\n(.*?)\n</script>", template, flags=re.S)
    assert len(pinned) == 3 and len(scripts) == 3
    assert [hashlib.sha256(s.encode()).hexdigest() for s in scripts] == [h for _, _, h in pinned]
    assert "{plot_divs}" in template and "{scripts}" not in template
