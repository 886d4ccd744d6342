"""Notebook 08's drawings: a tree attention mask as a heatmap, a verified tree with its accepted path."""

import pytest
import torch

from kangaroo_lite.core.token_tree import TokenTree, tree_attention
from kangaroo_lite.notebook.tree_view import (
    ACCEPTED_COLOUR,
    BONUS_COLOUR,
    CORRECTION_COLOUR,
    REJECTED_COLOUR,
    mask_figure,
    verified_tree_figure,
)


def small_tree() -> TokenTree:
    """Two children under the root, two under the first of them, one under the second: 5 nodes, depth 2."""
    tree = TokenTree()
    for token, parent in [(10, -1), (11, -1), (12, 0), (13, 0), (14, 1)]:
        tree.add(token, parent)
    return tree


def node_colours(fig) -> dict[str, str]:
    """Label → marker colour of the tree's nodes (the one trace with text)."""
    nodes = next(trace for trace in fig.data if trace.text)
    return dict(zip(nodes.text, nodes.marker.color, strict=True))


def test_the_mask_heatmap_fills_exactly_the_allowed_cells_and_labels_both_axes():
    tree = small_tree()
    mask, _ = tree_attention(tree.parents, 0, 1, torch.float32)
    allowed = mask[0, 0] == 0
    names = ["root", *map(str, tree.tokens)]
    fig = mask_figure(allowed, names, names, "a mask")
    assert [list(row) for row in fig.data[0].z] == allowed.int().tolist()
    assert list(fig.layout.xaxis.ticktext) == names == list(fig.layout.yaxis.ticktext)
    assert fig.layout.title.text == "a mask" and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="shape"):
        mask_figure(allowed, names[:-1], names, "wrong")


def test_the_accepted_path_is_green_the_rest_grey_and_a_correction_red():
    fig = verified_tree_figure(small_tree(), [0], 99, lambda t: f"t{t}", "root", "verified")
    colours = node_colours(fig)
    assert colours["t10"] == ACCEPTED_COLOUR
    assert all(colours[f"t{t}"] == REJECTED_COLOUR for t in (11, 12, 13, 14))
    assert colours["t99"] == CORRECTION_COLOUR  # node 0 has children, all rejected
    assert "the target's correction" in {trace.name for trace in fig.data}
    assert fig.layout.title.text == "verified" and fig.layout.xaxis.title.text


def test_a_path_ending_at_a_leaf_is_followed_by_a_bonus_token():
    fig = verified_tree_figure(small_tree(), [1, 4], 99, str, "root", "verified")
    colours = node_colours(fig)
    assert colours["11"] == colours["14"] == ACCEPTED_COLOUR and colours["99"] == BONUS_COLOUR


def test_no_accepted_draft_puts_the_correction_under_the_root():
    fig = verified_tree_figure(small_tree(), [], 99, str, "root", "verified")
    colours = node_colours(fig)
    assert colours["99"] == CORRECTION_COLOUR and ACCEPTED_COLOUR not in colours.values()


@pytest.mark.parametrize("path", [[2], [0, 4], [7]])
def test_a_path_that_does_not_run_from_the_root_is_refused(path):
    with pytest.raises(ValueError, match="not a path"):
        verified_tree_figure(small_tree(), path, 99, str, "root", "verified")
