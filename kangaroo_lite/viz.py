"""Token views coloured by fate (HTML for notebooks, rich text for the terminal) and plotly figures."""

from __future__ import annotations

import html

from transformers import PreTrainedTokenizerBase

from .result import ACCEPTED, BONUS, CORRECTION, TARGET, DecodingResult

FATE_COLOURS = {ACCEPTED: "#b7e4c7", CORRECTION: "#ffb3b3", BONUS: "#a0c4ff", TARGET: "#e9ecef"}
FATE_LABELS = {ACCEPTED: "drafted and accepted", CORRECTION: "target correction",
               BONUS: "bonus (all drafts accepted)", TARGET: "target token (no draft)"}
_RICH_STYLES = {ACCEPTED: "black on green", CORRECTION: "black on red", BONUS: "black on blue",
                TARGET: "default"}


def token_pieces(tokenizer: PreTrainedTokenizerBase, result: DecodingResult) -> list[tuple[str, str]]:
    """(text, fate) for every generated token, special tokens shown by name."""
    fates = result.fates()
    return [(tokenizer.decode([t]), fate) for t, fate in zip(result.tokens, fates, strict=True)]


def tokens_html(tokenizer: PreTrainedTokenizerBase, result: DecodingResult, legend: bool = True) -> str:
    """An HTML snippet with one coloured span per token; `data-fate` marks each for tests."""
    spans = "".join(
        f'<span class="kl-token" data-fate="{fate}" title="{FATE_LABELS[fate]}" '
        f'style="background:{FATE_COLOURS[fate]};border-radius:3px;padding:1px 0;white-space:pre-wrap">'
        f"{html.escape(text)}</span>"
        for text, fate in token_pieces(tokenizer, result)
    )
    key = ""
    if legend:
        key = " ".join(
            f'<span style="background:{FATE_COLOURS[f]};padding:1px 6px;border-radius:3px">{label}</span>'
            for f, label in FATE_LABELS.items()
        )
        key = f'<div style="font-size:85%;margin-bottom:4px">{key}</div>'
    return f'<div class="kl-tokens" style="font-family:monospace;line-height:1.8">{key}{spans}</div>'


def tokens_rich(tokenizer: PreTrainedTokenizerBase, result: DecodingResult):
    """A `rich.text.Text` of the generation coloured by fate, for the terminal."""
    from rich.text import Text

    text = Text()
    for piece, fate in token_pieces(tokenizer, result):
        text.append(piece, style=_RICH_STYLES[fate])
    return text


def rich_legend():
    """A one-line `rich.text.Text` legend of the fate colours."""
    from rich.text import Text

    legend = Text()
    for fate, label in FATE_LABELS.items():
        legend.append(f" {label} ", style=_RICH_STYLES[fate])
        legend.append(" ")
    return legend


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


def tree_figure(nodes: list[dict], title: str = "", height: int | None = None, depth_title: str = "depth",
                text_position: str = "middle right"):
    """A left-to-right tree drawn with plotly, leaves spread evenly and parents centred on their children.

    Each node is a dict: "id", "parent" (None for a root), "label" (text beside the node), and
    optionally "edge" (text on the edge from its parent), "color" (of the node and that edge),
    "width" (of that edge) and "hover". `text_position` places the labels (plotly's textposition);
    `height` defaults to one that grows with the number of leaves.
    """
    import plotly.graph_objects as go

    by_id = {n["id"]: n for n in nodes}
    missing = [n["parent"] for n in nodes if n.get("parent") is not None and n["parent"] not in by_id]
    if missing:
        raise ValueError(f"parents {missing} are not among the nodes")
    children: dict = {n["id"]: [] for n in nodes}
    for n in nodes:
        if n.get("parent") is not None:
            children[n["parent"]].append(n["id"])
    depth, y, leaves = {}, {}, [0]

    def place(node_id, d: int) -> float:
        depth[node_id] = d
        kids = children[node_id]
        if kids:
            y[node_id] = sum(place(k, d + 1) for k in kids) / len(kids)
        else:
            y[node_id], leaves[0] = -leaves[0], leaves[0] + 1
        return y[node_id]

    for root in (n["id"] for n in nodes if n.get("parent") is None):
        place(root, 0)
    fig = go.Figure()
    for n in nodes:
        parent = n.get("parent")
        if parent is None:
            continue
        x0, y0, x1, y1 = depth[parent], y[parent], depth[n["id"]], y[n["id"]]
        fig.add_scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                        line={"color": n.get("color", "#adb5bd"), "width": n.get("width", 2)})
        if n.get("edge"):
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=n["edge"], showarrow=False,
                               font={"size": 11}, bgcolor="rgba(255,255,255,0.85)")
    fig.add_scatter(x=[depth[n["id"]] for n in nodes], y=[y[n["id"]] for n in nodes], mode="markers+text",
                    text=[n.get("label", "") for n in nodes], textposition=text_position, showlegend=False,
                    hovertext=[n.get("hover", n.get("label", "")) for n in nodes], hoverinfo="text",
                    marker={"size": 12, "color": [n.get("color", "#495057") for n in nodes]})
    height = height or 160 + 70 * leaves[0]
    fig.update_layout(title=title, height=height, plot_bgcolor="white", margin={"l": 20, "r": 20},
                      xaxis={"title": depth_title, "dtick": 1, "range": [-0.2, max(depth.values()) + 0.7]},
                      yaxis={"visible": False, "range": [-leaves[0] + 0.5, 0.8]})
    return fig
