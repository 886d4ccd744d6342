"""The plotly figures of the benchmark report: speedup, #MAT and acceptance by position, per method."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cost_model import RoundCosts


def speedup_figure(results: dict):
    """Grouped bars: speedup over the baseline per subtask, one bar per method."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, s in results["summary"].items():
        subtasks = list(s["per_subtask"])
        fig.add_bar(name=name, x=subtasks + ["overall"],
                    y=[s["per_subtask"][t]["speedup"] for t in subtasks] + [s["speedup"]])
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_layout(barmode="group", title=f"Speedup over {results['baseline']} (median of repeats)",
                      xaxis_title="subtask", yaxis_title="speedup ×", height=420)
    return fig


def mean_accepted_figure(results: dict):
    """Grouped bars: #MAT (new tokens per target forward) per subtask."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, s in results["summary"].items():
        if s["mean_accepted"] is None:
            continue
        subtasks = list(s["per_subtask"])
        fig.add_bar(name=name, x=subtasks, y=[s["per_subtask"][t]["mean_accepted"] for t in subtasks])
    fig.update_layout(barmode="group", title="#MAT: new tokens per target forward pass", xaxis_title="subtask",
                      yaxis_title="#MAT (tokens / target pass)", height=380)
    return fig


def acceptance_figure(results: dict):
    """Lines: acceptance rate by draft position for every drafting method."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, s in results["summary"].items():
        rates = s.get("acceptance_by_position")
        if rates:
            fig.add_scatter(name=name, x=list(range(1, len(rates) + 1)), y=rates, mode="lines+markers")
    fig.update_layout(title="Acceptance rate by draft position", xaxis_title="draft position",
                      yaxis_title="accepted / drafted", yaxis_range=[0, 1.05], height=380)
    return fig


def verification_cost_figure(costs: dict[str, RoundCosts]):
    """Lines with error bars: v(n), a cached target pass over n new tokens relative to one, per model set.

    The markers are medians over the repeats, the bars the 25th–75th percentiles (`RoundCosts.curve`).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, rc in costs.items():
        sizes = sorted(rc.curve)
        medians = [rc.curve[n].median for n in sizes]
        fig.add_scatter(x=sizes, y=medians, mode="lines+markers", name=label,
                        error_y={"type": "data", "symmetric": False,
                                 "array": [rc.curve[n].high - m for n, m in zip(sizes, medians, strict=True)],
                                 "arrayminus": [m - rc.curve[n].low for n, m in zip(sizes, medians, strict=True)]})
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_layout(title="v(n): one cached target pass over n new tokens, relative to a pass over one "
                            "(median, bars: 25th–75th percentile)",
                      xaxis_title="n: new tokens in the pass", yaxis_title="cost relative to a one-token pass",
                      yaxis_rangemode="tozero", height=400)
    return fig


def estimated_speedup_figure(costs: RoundCosts, alpha: float, gamma: float | None = None,
                             measured: float | None = None, max_gamma: int | None = None):
    """Lines: the cost model's estimated speedup against γ at acceptance `alpha`, with this cost curve and free.

    `gamma` and `measured` mark the benchmark's mean draft length and measured speedup.
    """
    import plotly.graph_objects as go

    from .cost_model import expected_speedup

    top = max_gamma or max(costs.curve) - 1
    gammas = list(range(1, top + 1))
    fig = go.Figure()
    fig.add_scatter(x=gammas, y=[costs.expected_speedup(alpha, g) for g in gammas], mode="lines+markers",
                    name="measured v(n), this CPU")
    fig.add_scatter(x=gammas, y=[expected_speedup(alpha, g, costs.c) for g in gammas], mode="lines",
                    line_dash="dash", name="free verification, v(n) = 1 (GPU-like, assumed)")
    if gamma is not None:
        fig.add_scatter(x=[gamma], y=[costs.expected_speedup(alpha, gamma)], mode="markers", name="estimate at mean γ",
                        marker={"size": 12, "symbol": "diamond"})
        if measured is not None:
            fig.add_scatter(x=[gamma], y=[measured], mode="markers", name="measured speedup",
                            marker={"size": 12, "symbol": "x", "color": "#c92a2a"})
    fig.add_hline(y=1.0, line_dash="dot")
    fig.update_layout(title=f"Estimated speedup against the draft length γ (α = {alpha:.2f}, c = {costs.c:.3f})",
                      xaxis_title="γ: drafts verified per round", yaxis_title="speedup ×", yaxis_rangemode="tozero",
                      height=400)
    return fig
