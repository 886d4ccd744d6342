"""The MTAD beam tree drawn with plotly: which drafted sequences the beam kept, and their probabilities."""

from __future__ import annotations


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
