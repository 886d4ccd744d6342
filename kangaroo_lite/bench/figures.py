"""The plotly figures of the benchmark report: speedup, #MAT and acceptance by position, per method."""

from __future__ import annotations


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
                      yaxis_title="speedup ×", height=420)
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
    fig.update_layout(barmode="group", title="#MAT: new tokens per target forward pass", height=380)
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
