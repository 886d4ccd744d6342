"""Token trees: many draft continuations verified in one target pass, and the rules that accept a path of them.

A token tree holds draft nodes in a flat order where a parent precedes its children; a node's
parent is -1 when it is a child of the root (the last token the target has seen). The target
reads [fresh tokens, every node] in one pass under a tree attention mask, so that each node
sees only the context and its own ancestors (SpecInfer's tree-based parallel decoding); row 0
of its output follows the last fresh token and row 1 + j follows node j.

Acceptance walks down from the root (SpecInfer's multi-step speculative sampling, as EAGLE
uses it): at a node, its children are tried in order against the target's row for that node.
A child x drawn from a draft distribution q is accepted with probability min(1, p(x)/q(x));
on rejection p becomes the residual normalise(max(p - q, 0)) and the next sibling is tried
against it. A deterministic child (a top-k pick, a copied token) is a point mass q = one-hot(x):
accepted with probability p(x), and on rejection p loses x. When a child is accepted the walk
descends into it; when all are rejected, the next token is drawn from the residual. Each step
keeps the target's distribution exactly, provided a sampled child is drawn from the q it carries
given its earlier siblings: i.i.d. siblings share one q (duplicates included, as SpecInfer
samples them); siblings drawn without replacement each carry q with the earlier ones removed
and renormalised (as EAGLE does). A point mass qualifies whatever chose its token. Greedy
decoding is the one-hot case, computed directly: the longest path whose every node is the
target's argmax at its parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .sampling import residual_distribution, sample, warp

TREE_ATTENTION = ("eager", "sdpa")  # attention implementations that take a custom 4D float mask


def check_tree_support(target, method: str, longest: int | None = None) -> None:
    """Raise `ValueError` unless `target`'s attention takes a custom 4D tree mask (and, given the `longest`
    sequence a decoding may reach, it fits a sliding attention window, which tree masks do not model)."""
    implementation = target.config._attn_implementation
    if implementation not in TREE_ATTENTION:
        raise ValueError(f"{method} verifies token trees with a custom 4D attention mask, which {implementation!r} "
                         "attention does not take: load the target with attn_implementation='sdpa' or 'eager'")
    window = getattr(target.config, "sliding_window", None)
    if longest is not None and window is not None and longest > window:
        raise ValueError(f"{method} does not model sliding-window attention: {longest} positions exceed the "
                         f"target's window of {window}")


@dataclass
class TokenTree:
    """Draft nodes in flat order, a parent before its children; parent -1 is the root, draft_probs None a point mass."""

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    draft_probs: list[torch.Tensor | None] = field(default_factory=list)

    def add(self, token: int, parent: int = -1, draft_probs: torch.Tensor | None = None) -> int:
        """Append a node under `parent` (-1: the root), drawn from `draft_probs` (None: chosen); its index."""
        if not -1 <= parent < len(self.tokens):
            raise ValueError(f"parent must be -1 or an existing node (< {len(self.tokens)}), got {parent}")
        self.tokens.append(int(token))
        self.parents.append(parent)
        self.draft_probs.append(draft_probs)
        return len(self.tokens) - 1

    @classmethod
    def chain(cls, tokens: Sequence[int], draft_probs: Sequence[torch.Tensor | None] | None = None) -> TokenTree:
        """A tree with one child per node: the drafts of a chain method."""
        tree = cls()
        for i, token in enumerate(tokens):
            tree.add(token, i - 1, None if draft_probs is None else draft_probs[i])
        return tree

    def __len__(self) -> int:
        return len(self.tokens)

    def children(self, node: int) -> list[int]:
        """The children of `node` (-1: the root) in the order they are tried."""
        return [i for i, parent in enumerate(self.parents) if parent == node]

    def ancestors(self, node: int) -> list[int]:
        """The nodes above `node`, root side first (the root itself, -1, excluded)."""
        path = []
        while (node := self.parents[node]) >= 0:
            path.append(node)
        return path[::-1]

    def depth(self, node: int) -> int:
        """Number of nodes on the path from the root to `node` (1 for a child of the root, 0 for the root)."""
        return 0 if node < 0 else len(self.ancestors(node)) + 1

    def path_to(self, node: int) -> list[int]:
        """The nodes from the root down to `node`, itself included ([] for the root)."""
        return [] if node < 0 else [*self.ancestors(node), node]

    def path_tokens(self, node: int) -> list[int]:
        """The tokens along `path_to(node)`."""
        return [self.tokens[i] for i in self.path_to(node)]

    def attention(
        self, cached: int, fresh: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`tree_attention` for this tree's nodes."""
        return tree_attention(self.parents, cached, fresh, dtype, device)


def ancestry_matrix(parents: Sequence[int]) -> torch.Tensor:
    """(n, n) bool: row i marks node i and its ancestors, for flat `parents` (-1: a child of the root)."""
    rows = torch.zeros(len(parents), len(parents), dtype=torch.bool)
    for i, parent in enumerate(parents):
        if not -1 <= parent < i:
            raise ValueError(f"node {i}'s parent must be -1 or an earlier node, got {parent}")
        if parent >= 0:
            rows[i] = rows[parent]
        rows[i, i] = True
    return rows


def tree_attention(
    parents: Sequence[int], cached: int, fresh: int, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """4D additive mask (1, 1, q, kv) and position ids (1, q) for [fresh tokens, every tree node].

    Fresh tokens attend causally; each node attends to the cache, all fresh tokens, its
    ancestors and itself, and sits at position cached + fresh - 1 + depth.
    """
    ancestry = ancestry_matrix(parents).to(device)
    queries = fresh + len(parents)
    allowed = torch.zeros(queries, cached + queries, dtype=torch.bool, device=device)
    allowed[:, :cached] = True
    allowed[:fresh, cached : cached + fresh] = torch.ones(fresh, fresh, dtype=torch.bool, device=device).tril()
    allowed[fresh:, cached : cached + fresh] = True
    allowed[fresh:, cached + fresh :] = ancestry
    positions = torch.cat([torch.arange(cached, cached + fresh, device=device), cached + fresh - 1 + ancestry.sum(-1)])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None], positions[None]


def accept_greedy_tree(tree: TokenTree, target_logits: torch.Tensor) -> tuple[list[int], int]:
    """The longest path whose every node is the target's argmax at its parent, and the target's argmax after it.

    `target_logits` is (1 + nodes, V): row 0 follows the last fresh token, row 1 + j node j.
    Among paths of equal length the one ending at the earliest node wins.
    """
    choices = target_logits.argmax(-1).tolist()
    depths, best = [], -1
    for i, (token, parent) in enumerate(zip(tree.tokens, tree.parents, strict=True)):
        matched = token == choices[1 + parent] and (parent < 0 or depths[parent] > 0)
        depths.append(depths[parent] + 1 if matched and parent >= 0 else int(matched))
        if depths[i] > (depths[best] if best >= 0 else 0):
            best = i
    return tree.path_to(best), choices[1 + best]


def accept_sampled_tree(
    tree: TokenTree, target_probs: torch.Tensor, generator: torch.Generator
) -> tuple[list[int], int]:
    """Multi-candidate rejection sampling down the tree: the accepted path and the target's next token.

    `target_probs` is (1 + nodes, V), rows as in `accept_greedy_tree`. The emitted tokens (the
    path's, then the next one) are distributed exactly as the target's (see the module docstring).
    """
    node, path = -1, []
    while True:
        p = target_probs[1 + node]
        for child in tree.children(node):
            token, q = tree.tokens[child], tree.draft_probs[child]
            if q is None:
                q = torch.nn.functional.one_hot(torch.tensor(token), p.shape[-1]).to(p)
            if q[token] <= 0:
                raise ValueError(f"node {child}'s token {token} has probability 0 under the q it was drawn from")
            if float(torch.rand((), generator=generator)) < float(p[token] / q[token]):
                break
            p = residual_distribution(p, q)
        else:
            return path, sample(p, generator)
        path.append(child)
        node = child


def verify_tree(
    tree: TokenTree, target_logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> tuple[list[int], int]:
    """The accepted path and next token from the target's logits (1 + nodes, V): greedy at temperature 0."""
    if temperature == 0:
        return accept_greedy_tree(tree, target_logits)
    return accept_sampled_tree(tree, warp(target_logits, temperature, top_p), generator)
