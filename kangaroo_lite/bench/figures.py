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


def pass_latency_figure(latencies: dict[str, dict[int, float]]):
    """Lines: milliseconds of one cached target pass against the new tokens it reads, one line per model."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, curve in latencies.items():
        sizes = sorted(curve)
        fig.add_scatter(x=sizes, y=[curve[n] for n in sizes], mode="lines+markers", name=label)
    fig.update_layout(title="One target pass (KV cache) against the new tokens it reads", xaxis_title="new tokens",
                      yaxis_title="ms", yaxis_rangemode="tozero", height=380)
    return fig


def expected_speedup_figure(curves: dict[str, dict[int, float]], cost_ratio: float, measured_alpha: float | None = None,
                            max_gamma: int = 15):
    """Lines: the best expected speedup (over γ ≤ `max_gamma`) against acceptance α, one line per cost curve."""
    import plotly.graph_objects as go

    from .cost_model import best_expected_speedup

    alphas = [i / 20 for i in range(20)]
    fig = go.Figure()
    for label, curve in curves.items():
        best = [best_expected_speedup(a, cost_ratio, curve, max_gamma) for a in alphas]
        fig.add_scatter(x=alphas, y=[s for _, s in best], mode="lines", name=label,
                        customdata=[g for g, _ in best], hovertemplate="α %{x}: %{y:.2f}× at γ = %{customdata}")
    fig.add_hline(y=1.0, line_dash="dot")
    if measured_alpha is not None:
        fig.add_vline(x=measured_alpha, line_dash="dash", line_color="#c92a2a",
                      annotation_text=f"measured α = {measured_alpha:.2f}")
    fig.update_layout(title=f"Expected speedup at the best draft length (draft step c = {cost_ratio:.3f} of a pass)",
                      xaxis_title="acceptance α", yaxis_title="expected speedup ×", height=400)
    return fig
