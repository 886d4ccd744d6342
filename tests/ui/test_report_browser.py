"""The benchmark's HTML report in headless chromium with the network cut: every plotly figure is drawn.

A quick benchmark on tiny random models (over the real tokenizer) writes `report.html`; the page is
opened from file:// with every http(s) request aborted and recorded, so a figure that needed a CDN
would be missing and the attempt would show up in the record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_tiny_data_dir

from kangaroo_lite.bench.runner import BenchConfig, run_bench, write_results

pytestmark = pytest.mark.ui

FIGURES = 3  # speedup per subtask per method, #MAT, acceptance by draft position
MS = 1000

FIGURES_JS = """
() => [...document.querySelectorAll('.js-plotly-plot')].map((gd) => ({
  id: gd.id,
  traces: (gd.data || []).length,
  laid_out: Boolean(gd._fullLayout),
  svg: gd.querySelectorAll('svg.main-svg').length,
  drawn: gd.querySelectorAll('svg.main-svg g.trace, svg.main-svg .barlayer path, svg.main-svg .scatterlayer path')
    .length,
  width: gd.getBoundingClientRect().width,
  height: gd.getBoundingClientRect().height,
}))
"""


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A data folder shaped like data/, with tiny random models over the real tokenizer."""
    return make_tiny_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def report(tiny_data, tmp_path_factory) -> tuple[dict, Path]:
    cfg = BenchConfig.quick(data_dir=str(tiny_data), questions_per_subtask=1, max_new_tokens=8, repeats=1)
    results = run_bench(cfg, progress=False)
    out = tmp_path_factory.mktemp("report")
    write_results(results, out)
    return results, out / "report.html"


def test_report_renders_every_figure_offline(report, offline_page, ui_results_dir):
    results, path = report
    page = offline_page.page
    page.goto(path.as_uri(), wait_until="load", timeout=60 * MS)
    page.wait_for_function(
        f"() => document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= {FIGURES}", timeout=60 * MS
    )
    page.screenshot(path=ui_results_dir / "report.png", full_page=True)

    assert not offline_page.blocked, f"the report fetched from the network: {offline_page.blocked[:5]}"
    assert page.evaluate("() => typeof window.Plotly") == "object", "plotly.js is not inlined in the report"

    figures = page.evaluate(FIGURES_JS)
    assert len(figures) == FIGURES, figures
    for figure in figures:
        assert figure["laid_out"] and figure["traces"] > 0, figure
        assert figure["svg"] > 0 and figure["drawn"] > 0, f"figure {figure['id']} has no drawn traces: {figure}"
        assert figure["width"] > 100 and figure["height"] > 100, figure

    # the summary table: a header and one row per benchmarked method
    table = page.locator("table#summary")
    assert table.count() == 1
    assert table.locator("tr").count() == 1 + len(results["summary"])
    methods = table.locator("tr td:first-child").all_inner_texts()
    assert methods == list(results["summary"])
    assert not [e for e in offline_page.console_errors if "plotly" in e.lower() or "pageerror" in e], (
        offline_page.console_errors
    )
