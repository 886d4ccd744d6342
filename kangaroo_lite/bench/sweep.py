"""Parameter sweeps: run a notebook with papermill at every point of a grid, then collect the results.

A grid file (YAML) names the notebook, fixed parameters and the grid axes:

    notebook: notebooks/05_spec_bench.ipynb
    parameters: {questions_per_subtask: 2}
    grid: {threshold: [0.2, 0.4, 0.6, 0.8], max_draft_tokens: [4, 6]}

Each point gets its own executed notebook and JSON under the output folder; every notebook
writes its measurements to the path passed as its `result_json` parameter.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import yaml


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file: a notebook that exists and a non-empty grid of lists."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("notebook", "grid"):
        if key not in spec:
            raise ValueError(f"{path}: the grid file needs a {key!r} entry")
    if not isinstance(spec["grid"], dict) or not spec["grid"] or not all(
            isinstance(v, list) and v for v in spec["grid"].values()):
        raise ValueError(f"{path}: 'grid' must map each parameter to a non-empty list of values")
    notebook = Path(spec["notebook"])
    if not notebook.is_absolute():
        notebook = (path.parent / notebook) if (path.parent / notebook).is_file() else notebook
    if not notebook.is_file():
        raise FileNotFoundError(f"{path}: notebook {spec['notebook']} not found")
    return {"notebook": notebook, "parameters": spec.get("parameters") or {}, "grid": spec["grid"]}


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def scalar_metrics(result: dict) -> dict:
    """The numbers and strings at the top of a notebook's result JSON, plus its `metrics` dict."""
    flat = {k: v for k, v in result.items() if isinstance(v, int | float | str | bool)}
    flat.update(result.get("metrics", {}))
    return flat


def run_sweep(grid_file: str | Path, out_dir: str | Path, progress: bool = True) -> list[dict]:
    """Execute the grid's notebook at every point; returns one row (parameters + metrics) per point."""
    import papermill
    from tqdm.auto import tqdm

    spec = load_grid(grid_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, point in enumerate(tqdm(grid_points(spec["grid"]), desc="sweep", disable=not progress)):
        name = f"point_{index:03d}"
        result_path = out / f"{name}.json"
        params = {**spec["parameters"], **point, "result_json": str(result_path.resolve())}
        papermill.execute_notebook(str(spec["notebook"]), str(out / f"{name}.ipynb"), parameters=params,
                                   cwd=str(spec["notebook"].parent), progress_bar=False)
        rows.append({**point, **scalar_metrics(json.loads(result_path.read_text()))})
    (out / "sweep.json").write_text(json.dumps({"grid_file": str(grid_file), "rows": rows}, indent=1))
    write_sweep_figure(rows, list(spec["grid"]), out / "sweep.html")
    return rows


def write_sweep_figure(rows: list[dict], axes: list[str], path: str | Path) -> None:
    """One plotly figure: every numeric metric against the first grid axis, a line per other point."""
    from plotly.subplots import make_subplots

    metrics = [k for k in rows[0] if k not in axes and isinstance(rows[0][k], int | float)
               and not isinstance(rows[0][k], bool)]
    if not metrics:
        raise ValueError("the notebook's results hold no numeric metrics to plot")
    fig = make_subplots(rows=len(metrics), cols=1, subplot_titles=metrics, vertical_spacing=0.3 / len(metrics))
    x_axis, others = axes[0], axes[1:]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[a] for a in others), []).append(row)
    for i, metric in enumerate(metrics, 1):
        for key, members in groups.items():
            label = ", ".join(f"{a}={v}" for a, v in zip(others, key, strict=True)) or metric
            fig.add_scatter(x=[r[x_axis] for r in members], y=[r.get(metric) for r in members], name=label,
                            mode="lines+markers", showlegend=i == 1, legendgroup=label, row=i, col=1)
        fig.update_xaxes(title_text=x_axis, row=i, col=1)
    fig.update_layout(height=280 * len(metrics), title="Sweep results")
    fig.write_html(str(path), include_plotlyjs=True)


def print_sweep(rows: list[dict]) -> None:
    """The collected rows as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sweep")
    columns = list(rows[0])
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*[f"{row.get(c):.3g}" if isinstance(row.get(c), float) else str(row.get(c)) for c in columns])
    Console().print(table)
