"""Sphinx extension of the course's book: plotly figures drawn live from their JSON, widgets as what they show.

myst-nb renders neither plotly's MIME bundle (`application/vnd.plotly.v1+json`, all a figure's output holds
under a notebook runner) nor widgets without a widget manager from a CDN. Here a figure becomes a div drawn
by plotly.js, copied from the installed plotly package into `_static` (no CDN); a tqdm progress bar is left
out; any other widget (notebook 03's threshold slider) becomes its screenshot from docs/img. sphinx-thebe's
scripts are left out of the pages (thebe is off; they only raised an error).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, ClassVar

import myst_nb.core.render as nb_render
import plotly
from docutils import nodes
from sphinx.application import Sphinx

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = nb_render.WIDGET_VIEW_MIMETYPE
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
SLIDER_SHOT = "threshold_slider.png"  # docs/img, staged into _static by scripts/build_book.py
PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}
PROGRESS_TEXT = re.compile(r"\d+%\|.*\|\s*\d+/\d+\s*\[")  # a tqdm bar's text, as its widget's text/plain shows it


def _widget_models(renderer: Any) -> dict[str, dict]:
    """The notebook's stored widget state: model id → {model_name, state}."""
    widgets = renderer.renderer.nb_client.nb_metadata.get("widgets", {})
    return widgets.get(nb_render.WIDGET_STATE_MIMETYPE, {}).get("state", {})


def _is_progress_bar(model_id: str, models: dict[str, dict]) -> bool:
    """Whether a widget is (or directly holds) a progress bar: tqdm's HBox of text, bar, text."""
    model = models.get(model_id, {})
    children = [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", [])]
    return model.get("model_name") in PROGRESS_MODELS or any(
        models.get(c, {}).get("model_name") in PROGRESS_MODELS for c in children
    )


def plotly_html(figure: dict) -> str:
    """A div and the script that draws `figure` (plotly's JSON) into it with the page's plotly.js."""
    div = f"plotly-{uuid.uuid4().hex[:12]}"
    spec = json.dumps({"data": figure.get("data", []), "layout": figure.get("layout", {})})
    spec = spec.replace("</", "<\\/")
    return (
        f'<div id="{div}" class="plotly-figure" style="width:100%"></div>\n'
        f'<script type="text/javascript">(function() {{ var f = {spec};'
        f' Plotly.newPlot("{div}", f.data, f.layout, {{responsive: true}}); }})();</script>'
    )


class CourseOutputs:
    """A myst-nb MIME renderer plugin: plotly JSON first for HTML, widgets replaced by what a page can show."""

    mime_priority_overrides: ClassVar[list[tuple[str, str, int]]] = [("html", PLOTLY_MIME, 1)]

    @staticmethod
    def handle_mime(renderer: Any, data: Any, inline: bool) -> list[nodes.Element] | None:
        """Render a plotly figure or a widget view; None leaves every other MIME type to myst-nb."""
        if data.mime_type == PLOTLY_MIME:
            figure = data.content if isinstance(data.content, dict) else json.loads(data.content)
            return [nodes.raw(text=plotly_html(figure), format="html", classes=["output", "plotly"])]
        if data.mime_type == "text/plain" and PROGRESS_TEXT.search(str(data.content)):
            return []  # a progress bar whose widget could not be shown: its frozen text would read as a stuck cell
        if data.mime_type == WIDGET_MIME:
            view = data.content if isinstance(data.content, dict) else json.loads(data.content)
            if _is_progress_bar(view.get("model_id", ""), _widget_models(renderer)):
                return []
            note = (
                "A live widget needs a running kernel: open this notebook in JupyterLab "
                "(<code>kangaroo-lite notebooks DIR</code>, then <code>jupyter lab DIR</code>). "
                "Below, the app as the browser test saw it."
            )
            return [
                nodes.raw(
                    text=f'<div class="widget-screenshot"><p><em>{note}</em></p>'
                    f'<img src="_static/{html.escape(SLIDER_SHOT)}" style="max-width:100%" '
                    f'alt="The threshold slider app in JupyterLab"></div>',
                    format="html",
                    classes=["output", "widget"],
                )
            ]
        return None


def _is_thebe(asset: Any) -> bool:
    name = getattr(asset, "filename", None) or str(asset)
    return "thebe" in name or "THEBE_JS_URL" in getattr(asset, "attributes", {}).get("body", "")


def _drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Leave out sphinx-thebe's scripts (Jupyter Book 1 always loads it; its config is declared twice, an error
    on every page): live code needs a kernel, which is what `kangaroo-lite notebooks` gives a learner."""
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe(asset)]


def _copy_plotly_js(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copy2(PLOTLY_JS, Path(app.outdir) / "_static" / PLOTLY_JS.name)


def setup(app: Sphinx) -> dict:
    """Register the plugin with myst-nb and load the local plotly.js on every page."""
    loader = nb_render.load_mime_renders
    if not getattr(loader, "course_outputs", False):

        def load_with_course_outputs() -> list:
            return [CourseOutputs, *loader()]

        load_with_course_outputs.course_outputs = True
        nb_render.load_mime_renders = load_with_course_outputs
    app.add_js_file(PLOTLY_JS.name)
    app.connect("build-finished", _copy_plotly_js)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
