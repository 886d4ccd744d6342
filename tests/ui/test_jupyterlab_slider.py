"""Notebook 03 as a user meets it: JupyterLab in headless chromium, Run All Cells, the threshold slider.

It runs twice: as committed (the embedded tiny models) and with `model = "smollm2"` (SmolLM2-135M on
real Spec-Bench questions, where drafts are often rejected), the parameter injected by papermill into
a copy under results/ui/ — never into the committed notebook.

The test reads the widget's rendered DOM, whose contract is: every token span carries `data-fate`
(accepted, rejected, correction, bonus or target), every draft's span a `data-source` (copy: copied from
the context, in its own colour; drafter: drafted by the adapter), every drafting round a `data-draft-length`, the
statistics sit in a `.kl-stats` element with data-attributes, and the slider's description contains
"threshold". It moves the slider from 0 (never stop early) to 0.9 and checks that the token view and the acceptance
chart follow, with no request leaving 127.0.0.1 (plotly is bundled, no CDN).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ui

REPO = Path(__file__).resolve().parents[2]

NOTEBOOK = "notebooks/03_dual_early_exit.ipynb"
FATES = {"accepted", "rejected", "correction", "bonus", "target"}
SOURCES = {"copy", "drafter"}
README_SHOTS = {"tiny": REPO / "docs" / "img" / "threshold_slider.png",
                "smollm2": REPO / "docs" / "img" / "threshold_slider_smollm2.png"}
# 0 (never stop early) against 0.9 (stop after nearly every draft) is a change of the draft loop a
# user sees on the first prompt, with either model.
LOW, HIGH = 0.0, 0.9
# The real-model copy sweeps two thresholds on one prompt: the slider app below it is what is tested here.
LIGHT_SWEEP = {"sweep_thresholds": [0.0, 0.6], "num_prompts": 1}
KERNEL_START_S = 120
RUN_ALL_S = 600  # the first run of notebook 03 on 2 CPU cores loads and runs the models (SmolLM2: ~4 min)
REDRAW_S = 180
MS = 1000

# Everything the test reads, taken from the code cell that holds the threshold slider.
SNAPSHOT_JS = """
(slider) => {
  const cell = slider.closest('.jp-CodeCell') || document.body;
  const fates = {};
  const spans = [...cell.querySelectorAll('[data-fate]')];
  for (const s of spans) fates[s.dataset.fate] = (fates[s.dataset.fate] || 0) + 1;
  const plain = (v) => (ArrayBuffer.isView(v) ? Array.from(v) : v);
  // a chart's traces over numbers (draft positions, draft lengths); categorical ones (timings) left out
  const numeric = (t) => Array.from(t.x || []).length > 0 && Array.from(t.x).every((v) => typeof v === 'number');
  const charts = [...cell.querySelectorAll('.js-plotly-plot')].map((gd) =>
    JSON.stringify((gd.data || []).filter(numeric).map((t) => ({type: t.type, name: t.name, x: plain(t.x),
                                                                  y: plain(t.y)}))));
  return {
    readout: (slider.querySelector('.widget-readout') || {}).textContent || '',
    tokens: spans.length,
    fates,
    unknown_fates: [...new Set(spans.map((s) => s.dataset.fate))].filter((f) => !FATES.includes(f)),
    sources: spans.filter((s) => s.dataset.source).length,
    unknown_sources: [...new Set(spans.map((s) => s.dataset.source).filter((v) => v))]
      .filter((v) => !SOURCES.includes(v)),
    draft_lengths: [...cell.querySelectorAll('[data-draft-length]')].map((e) => Number(e.dataset.draftLength)),
    stats: [...cell.querySelectorAll('.kl-stats')].map((e) => ({...e.dataset})),
    charts,
    charts_drawn: [...cell.querySelectorAll('.js-plotly-plot')].filter((gd) => gd.querySelector('svg.main-svg')).length,
  };
}
""".replace("FATES", str(sorted(FATES))).replace("SOURCES", str(sorted(SOURCES)))

# The notebook panel's kernel and the outputs of its cells, through the app JupyterLab exposes.
KERNEL_STATUS_JS = """
() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.status : 'none';
}
"""
CELLS_JS = """
() => {
  const model = window.jupyterapp.shell.currentWidget.content.model;
  const cells = [];
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    if (c.type !== 'code') continue;
    const outputs = [];
    for (let j = 0; j < c.outputs.length; j++) outputs.push(c.outputs.get(j).toJSON());
    const timing = c.getMetadata('execution') || {};
    const seconds = (Date.parse(timing['shell.execute_reply']) - Date.parse(timing['iopub.execute_input'])) / 1000;
    cells.push({count: c.executionCount, source: c.sharedModel.getSource().slice(0, 80), outputs,
                seconds: Number.isFinite(seconds) ? seconds : null});
  }
  return cells;
}
"""


@pytest.fixture(params=["tiny", "smollm2"])
def notebook_03(request, jupyter_lab):
    """(the model, the notebook's path relative to the lab root): the committed notebook for "tiny", a
    papermill-prepared copy with `model = "smollm2"` under results/ui/ otherwise. The committed one must
    not be saved by the test (JupyterLab's autosave is off: no outputs stored)."""
    model = request.param
    path = jupyter_lab.root / NOTEBOOK
    if not path.exists():
        pytest.fail(f"{NOTEBOOK} does not exist", pytrace=False)
    before = path.stat().st_mtime_ns
    relpath = NOTEBOOK
    if model != "tiny":
        import papermill

        relpath = f"results/ui/03_dual_early_exit_{model}.ipynb"
        (jupyter_lab.root / relpath).parent.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(str(path), str(jupyter_lab.root / relpath),
                                   parameters={"model": model, **LIGHT_SWEEP}, prepare_only=True, progress_bar=False)
    yield model, relpath
    if path.stat().st_mtime_ns != before:
        cells = json.loads(path.read_text())["cells"]
        ran = [c for c in cells if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
        assert not ran, f"{NOTEBOOK} was saved with outputs during the browser test"


def _kernel_status(page) -> str:
    return page.evaluate(KERNEL_STATUS_JS)


def _wait_kernel_idle(page, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and "kernel" in dialog.first.inner_text().lower():
            dialog.locator(".jp-mod-accept").first.click()  # "Select Kernel": take the proposed python3
        if _kernel_status(page) == "idle":
            return
        time.sleep(0.5)
    raise AssertionError(f"the kernel did not become idle within {timeout_s:.0f} s (status {_kernel_status(page)})")


def _run_all_cells(page) -> None:
    """Run → Run All Cells, through the menu bar as a user would."""
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(
        ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")
    ).click()


def _write_timings(cells: list[dict]) -> list[dict]:
    """Each code cell's run time (JupyterLab's recordTiming) into results/ui/cell_timings.json."""
    timings = [{"cell": i, "seconds": c["seconds"], "source": c["source"].split("\n")[0]} for i, c in enumerate(cells)]
    (REPO / "results" / "ui" / "cell_timings.json").write_text(json.dumps(timings, indent=1))
    return timings


def _wait_all_executed(page, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cells = page.evaluate(CELLS_JS)
        errors = [o for c in cells for o in c["outputs"] if o.get("output_type") == "error"]
        if errors:
            trace = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", line) for line in errors[0].get("traceback", []))
            raise AssertionError(f"a cell of {NOTEBOOK} raised {errors[0].get('ename')}:\n{trace}")
        if all(c["count"] for c in cells) and _kernel_status(page) == "idle":
            return cells
        time.sleep(1)
    cells = page.evaluate(CELLS_JS)
    _write_timings(cells)
    pending = [c["source"] for c in cells if not c["count"]]
    raise AssertionError(f"Run All Cells did not finish within {timeout_s:.0f} s; not run yet: {pending}")


def _snapshot(slider) -> dict:
    return slider.evaluate(SNAPSHOT_JS)


def _settle(page, slider, value: float, timeout_s: float) -> dict:
    """The widget's DOM once it shows `value` (`.kl-stats` data-threshold, where given), the kernel is
    idle and nothing changed for a second and a half."""

    def shows_value(snap: dict) -> bool:
        return all(abs(float(s.get("threshold", value)) - value) < 1e-6 for s in snap["stats"])

    deadline = time.monotonic() + timeout_s
    previous = _snapshot(slider)
    while time.monotonic() < deadline:
        time.sleep(1.5)
        current = _snapshot(slider)
        if current == previous and shows_value(current) and _kernel_status(page) == "idle":
            return current
        previous = current
    raise AssertionError(
        f"the widget did not settle on threshold {value} within {timeout_s:.0f} s: {previous['stats']}"
    )


def _wait_changed(slider, before: dict, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _snapshot(slider)
        if {k: v for k, v in now.items() if k != "readout"} != {k: v for k, v in before.items() if k != "readout"}:
            return
        time.sleep(0.5)
    raise AssertionError(f"the widget did not redraw within {timeout_s:.0f} s of the slider's move")


def _set_threshold(page, slider, value: float) -> None:
    """Type the value into the slider's editable readout and press Enter (ipywidgets 8 FloatSlider)."""
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{value}")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([el, v]) => Math.abs(parseFloat(el.textContent) - v) < 1e-6",
        arg=[readout.element_handle(), value],
        timeout=30 * MS,
    )


def test_threshold_slider_changes_tokens_and_chart(jupyter_lab, offline_page, notebook_03, ui_results_dir):
    model, relpath = notebook_03
    page = offline_page.page
    page.set_default_timeout(60 * MS)
    page.goto(jupyter_lab.lab_url(relpath))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120 * MS)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # room for the widget (and the screenshot)
    _wait_kernel_idle(page, KERNEL_START_S)

    # the kernel is the venv's python: the default python3 kernelspec launched by this venv's JupyterLab
    deadline = time.monotonic() + KERNEL_START_S  # the session list can lag behind the kernel's status
    while True:
        all_sessions = jupyter_lab.api("sessions")
        sessions = [s for s in all_sessions if s["path"].endswith(relpath)]
        if sessions or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sessions, f"JupyterLab started no kernel session for {relpath}: {[s['path'] for s in all_sessions]}"
    kernel = sessions[0]["kernel"]
    assert kernel["name"] == jupyter_lab.api("kernelspecs")["default"] == "python3"
    argv = jupyter_lab.kernel_argv(kernel["id"])
    assert argv and Path(argv[0]) == Path(sys.executable), f"kernel runs {argv[:1]}, not {sys.executable}"

    _run_all_cells(page)
    started = time.monotonic()
    cells = _wait_all_executed(page, RUN_ALL_S)
    print(f"Run All Cells: {time.monotonic() - started:.0f} s; slowest cells:")
    for row in sorted(_write_timings(cells), key=lambda r: -(r["seconds"] or 0))[:5]:
        print(f"  {row['seconds'] or 0:6.1f} s  cell {row['cell']}: {row['source']}")

    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile("threshold", re.I)))
    slider.first.wait_for(state="visible", timeout=60 * MS)
    slider = slider.first
    slider.scroll_into_view_if_needed()
    widget_area = slider.locator("xpath=ancestor::div[contains(@class, 'jp-Cell-outputWrapper')][1]")

    _set_threshold(page, slider, LOW)
    low = _settle(page, slider, LOW, REDRAW_S)
    widget_area.screenshot(path=ui_results_dir / f"slider_{model}_{LOW}.png")

    _set_threshold(page, slider, HIGH)
    _wait_changed(slider, low, REDRAW_S)
    high = _settle(page, slider, HIGH, REDRAW_S)
    widget_area.screenshot(path=ui_results_dir / f"slider_{model}_{HIGH}.png")
    if os.environ.get("KL_UPDATE_SCREENSHOT"):  # refresh the README's pictures only when asked
        README_SHOTS[model].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ui_results_dir / f"slider_{model}_{HIGH}.png", README_SHOTS[model])

    for name, snap in ((LOW, low), (HIGH, high)):
        assert snap["tokens"] > 0, f"no token spans with data-fate at threshold {name}"
        assert not snap["unknown_fates"], f"unknown data-fate values at {name}: {snap['unknown_fates']}"
        assert snap["sources"] > 0, f"no draft spans with data-source at threshold {name}"
        assert not snap["unknown_sources"], f"unknown data-source values at {name}: {snap['unknown_sources']}"
        assert snap["draft_lengths"], f"no data-draft-length at threshold {name}"
        assert snap["stats"], f"no .kl-stats element at threshold {name}"
        assert snap["charts"] and snap["charts_drawn"] == len(snap["charts"]), f"acceptance chart not drawn at {name}"
    # the token view follows the slider: the tokens' fates (an accurate adapter may keep every
    # accepted draft and only stop before the rejected ones) and the drafts' lengths
    assert low["fates"] != high["fates"], (low["fates"], high["fates"])
    assert low["draft_lengths"] != high["draft_lengths"], (low["draft_lengths"], high["draft_lengths"])
    assert low["stats"] != high["stats"]
    # ... and so does the acceptance chart (its traces over draft positions and lengths)
    assert low["charts"] != high["charts"], low["charts"]

    # every plotly figure of the notebook is drawn, offline: nothing was fetched beyond 127.0.0.1
    figures = page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel .js-plotly-plot')].map((gd) => ({
             traces: (gd.data || []).length, svg: gd.querySelectorAll('svg.main-svg').length}))"""
    )
    outputs = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in cells for o in c["outputs"])
    print(f"plotly figures: {outputs} in the cells' outputs, {len(figures)} drawn (the app's chart included)")
    assert len(figures) >= max(outputs, 1), f"{outputs} plotly outputs, {len(figures)} figures in the page"
    assert all(f["traces"] > 0 and f["svg"] > 0 for f in figures), figures
    assert page.locator(".jp-NotebookPanel .plotly").count() >= 1
    assert not offline_page.blocked, f"requests left 127.0.0.1: {offline_page.blocked[:5]}"
