"""The course as a web site (`make book`), opened in headless Chromium with no network.

The site is built once per session by scripts/build_book.py into build/book (git-ignored): the notebooks are
executed there and their outputs cached by jupyter-cache, so a rerun with unchanged notebooks only renders.
Every page loads without a script error or a request off this machine, every notebook page draws its plotly
figures, and no cell shows an error.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BOOK_OUT = REPO / "build" / "book"
CHAPTERS = [c["file"] for c in yaml.safe_load((REPO / "book" / "_toc.yml").read_text())["chapters"]]
PROGRESS_TEXT = re.compile(r"\d+%\|.*\|\s*\d+/\d+\s*\[")  # a tqdm progress bar as text: "12%|█ | 3/25 ["

pytestmark = pytest.mark.ui


def _cached_figures(chapter: str) -> int:
    """How many plotly figures the executed notebook holds (from the staged source's cached run)."""
    from jupyter_cache import get_cache

    cache = get_cache(BOOK_OUT / "_build" / ".jupyter_cache")
    _, executed = cache.merge_match_into_file(str(BOOK_OUT / "src" / f"{chapter}.ipynb"))
    return sum(
        "application/vnd.plotly.v1+json" in out.get("data", {})
        for cell in executed.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


@pytest.fixture(scope="session")
def book_site() -> Path:
    """Build the book (executing only notebooks whose code changed since the cached run); the site's folder."""
    try:
        import jupyter_book  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no") or os.geteuid() == 0:
            pytest.fail("jupyter-book is not installed: make book (pip install -e '.[book]')", pytrace=False)
        pytest.skip("jupyter-book is not installed: make book (pip install -e '.[book]')")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_book.py"), "--out", str(BOOK_OUT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, f"the book did not build:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return BOOK_OUT / "_build" / "html"


@pytest.fixture(scope="session")
def site_url(book_site):
    """The built site served on 127.0.0.1 (a free port), as a reader's browser would get it."""
    handler = functools.partial(QuietHandler, directory=str(book_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that keeps the test log clean."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def _open(offline_page, url: str):
    page = offline_page.page
    response = page.goto(url, wait_until="load", timeout=60_000)
    assert response is not None and response.ok, f"{url}: {response and response.status}"
    return page


def test_the_intro_page_links_every_notebook_and_shows_the_readme_figures(offline_page, site_url):
    page = _open(offline_page, f"{site_url}/index.html")  # the site's front door forwards to the intro
    page.wait_for_url("**/intro.html", timeout=30_000)
    assert "speculative decoding" in page.title().lower()
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    for chapter in CHAPTERS:
        assert any(link.split("#")[0] == f"{chapter}.html" for link in links), chapter
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
    shots = [(src, width) for src, width in images if "threshold_slider" in src]
    assert len(shots) == 2 and all(width > 0 for _, width in shots), images
    assert not offline_page.blocked and not offline_page.console_errors


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_notebook_page_draws_its_figures_and_shows_no_error(offline_page, site_url, chapter):
    page = _open(offline_page, f"{site_url}/{chapter}.html")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plotly-figure')].every(d => d.querySelector('.main-svg'))",
        timeout=60_000,
    )
    drawn = page.eval_on_selector_all(".plotly-figure", "els => els.filter(e => e.querySelector('.main-svg')).length")
    expected = _cached_figures(chapter)
    assert drawn == expected > 0, (chapter, drawn, expected)
    text = page.inner_text("article")
    assert "Traceback (most recent call last)" not in text and not page.query_selector(".output.traceback")
    assert not PROGRESS_TEXT.search(text), PROGRESS_TEXT.search(text)  # a frozen "0%|" bar reads as a stuck cell
    images = page.eval_on_selector_all("article img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
    assert all(width > 0 for _, width in images), images
    assert not offline_page.blocked, offline_page.blocked
    assert not offline_page.console_errors, offline_page.console_errors


def test_the_slider_is_shown_as_its_screenshot_where_it_cannot_be_live(offline_page, site_url):
    page = _open(offline_page, f"{site_url}/03_dual_early_exit.html")
    shot = page.query_selector(".widget-screenshot img")
    assert shot is not None and page.evaluate("img => img.naturalWidth", shot) > 0
    assert not page.query_selector("script[src*='cdn'], script[src*='unpkg']")
