"""A token tree as notebook 08 draws it: its attention mask as a heatmap, and a verified tree with its accepted path.

The tree itself is `core.token_tree.TokenTree`; the layout is `notebook.tree.tree_figure`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go
import torch

from ..core.token_tree import TokenTree
from .tree import tree_figure

ACCEPTED_COLOUR, REJECTED_COLOUR, ROOT_COLOUR = "#2f9e44", "#adb5bd", "#495057"
CORRECTION_COLOUR, BONUS_COLOUR = "#e03131", "#1c7ed6"


def mask_figure(allowed: torch.Tensor, queries: Sequence[str], keys: Sequence[str], title: str) -> go.Figure:
    """A boolean attention mask (queries × keys) as a heatmap: a filled cell where the query may attend to the key."""
    if tuple(allowed.shape) != (len(queries), len(keys)):
        raise ValueError(f"mask of shape {tuple(allowed.shape)} for {len(queries)} queries and {len(keys)} keys")
    cells = allowed.to(torch.int).tolist()
    fig = go.Figure(go.Heatmap(
        z=cells, x=list(range(len(keys))), y=list(range(len(queries))), zmin=0, zmax=1, xgap=2, ygap=2,
        colorscale=[[0, "#f1f3f5"], [1, "#4c6ef5"]], showscale=False,
        customdata=[[[q, k, "may attend" if c else "masked"] for k, c in zip(keys, row, strict=True)]
                    for q, row in zip(queries, cells, strict=True)],
        hovertemplate="%{customdata[0]} → %{customdata[1]}: %{customdata[2]}<extra></extra>"))
    fig.update_layout(title=title, height=220 + 34 * len(queries), plot_bgcolor="white",
                      xaxis={"title": "key: the position attended to", "tickvals": list(range(len(keys))),
                             "ticktext": list(keys), "tickangle": -40},
                      yaxis={"title": "query: the position attending", "tickvals": list(range(len(queries))),
                             "ticktext": list(queries), "autorange": "reversed"})
    return fig


def verified_tree_figure(tree: TokenTree, path: Sequence[int], next_token: int, label: Callable[[int], str],
                         root: str, title: str) -> go.Figure:
    """The tree under its root, the accepted `path` (node indices) in green, then the target's `next_token`.

    The next token is the target's correction (red) when the path ends where the tree goes on (all the
    children there were rejected), its bonus token (blue) when the path ends at a leaf. `label(token)`
    gives a token's text.
    """
    if any(not 0 <= node < len(tree) for node in path) or list(path) != tree.path_to(path[-1] if path else -1):
        raise ValueError(f"{list(path)} is not a path from the root of a tree of {len(tree)} nodes")
    accepted, end = set(path), path[-1] if path else -1
    nodes = [{"id": -1, "parent": None, "label": root, "color": ROOT_COLOUR, "hover": f"root: {root}"}]
    for i, (token, parent) in enumerate(zip(tree.tokens, tree.parents, strict=True)):
        fate = "accepted" if i in accepted else "rejected" if parent in accepted | {-1} else "not reached"
        nodes.append({"id": i, "parent": parent, "label": label(token), "hover": f"node {i}: {label(token)}, {fate}",
                      "color": ACCEPTED_COLOUR if i in accepted else REJECTED_COLOUR,
                      "width": 4 if i in accepted else 1.5})
    correction = bool(tree.children(end))
    colour = CORRECTION_COLOUR if correction else BONUS_COLOUR
    kind = "the target's correction" if correction else "the target's bonus token"
    nodes.append({"id": "next", "parent": end, "label": label(next_token), "color": colour, "width": 4,
                  "hover": f"{kind}: {label(next_token)}"})
    fig = tree_figure(nodes, title=title, depth_title="tokens after the root")
    legend = {"root: the last token, not yet read by the target": ROOT_COLOUR, "draft accepted": ACCEPTED_COLOUR,
              "draft rejected, or below a rejected one": REJECTED_COLOUR, kind: colour}
    for name, marker in legend.items():
        fig.add_scatter(x=[None], y=[None], mode="markers", marker={"size": 12, "color": marker}, name=name)
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.15})
    return fig
