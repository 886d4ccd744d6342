"""The benchmark's outputs for people: a terminal table and a self-contained HTML report."""

from __future__ import annotations

import html
from pathlib import Path

from .viz import acceptance_figure, mean_accepted_figure, speedup_figure

COLUMNS = [
    ("speedup", "speedup", "{:.2f}x"),
    ("tokens_per_second", "tokens/s", "{:.0f}"),
    ("mean_accepted", "#MAT", "{:.2f}"),
    ("acceptance_rate", "α", "{:.2f}"),
    ("target_forwards_per_token", "target fwd/token", "{:.2f}"),
    ("analytic_speedup", "analytic bound", "{:.2f}x"),
    ("cpu_seconds_per_token", "CPU ms/token", "{:.2f}"),
    ("extra_parameters", "extra params", "{:,}"),
    ("identical_to_baseline", "= baseline", "{}"),
]


def _cell(summary: dict, key: str, fmt: str) -> str:
    value = summary.get(key)
    if value is None:
        return "–"
    if key == "cpu_seconds_per_token":
        value *= 1000
    return fmt.format(value)


def summary_rows(results: dict) -> list[list[str]]:
    """One row of formatted cells per method, in `COLUMNS` order."""
    return [[name] + [_cell(s, key, fmt) for key, _, fmt in COLUMNS] for name, s in results["summary"].items()]


def print_summary(results: dict) -> None:
    """Print the summary table with rich."""
    from rich.console import Console
    from rich.table import Table

    env = results["environment"]
    table = Table(title=f"mini Spec-Bench — {env['device_name']} ({env['device']}, {env['dtype']}); "
                        f"baseline: {results['baseline']}")
    table.add_column("method")
    for _, label, _ in COLUMNS:
        table.add_column(label, justify="right")
    for row in summary_rows(results):
        table.add_row(*row)
    Console(width=170).print(table)


def write_html_report(results: dict, path: str | Path) -> None:
    """A single HTML file with the tables and plotly figures, plotly.js inlined (works offline)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in summary_rows(results))
    figures = [speedup_figure(results), mean_accepted_figure(results), acceptance_figure(results)]
    plots = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"figure-{i}")
                    for i, fig in enumerate(figures))
    env = results["environment"]
    config = html.escape(str(results["config"]))
    Path(path).write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kangaroo_lite benchmark</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}</style>
</head><body>
<h1>kangaroo_lite — mini Spec-Bench</h1>
<p>{html.escape(env['device_name'])} · {env['device']} · {env['dtype']} · torch {env['torch']} ·
{env['date']} · baseline: <b>{results['baseline']}</b> (the faster of ours and Hugging Face's greedy)</p>
<table id="summary"><tr><th>method</th>{head}</tr>{rows}</table>
{plots}
<p><small>config: {config}</small></p>
</body></html>
""", encoding="utf-8")
