"""MTAD's draft tree: beam sampling from the draft model, the tree attention mask that scores every node in one
target pass, and the acceptance rule on joint likelihoods (see `mtad` for the whole round)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel

from ..core import token_tree
from ..core.sampling import warp


@dataclass
class BeamTree:
    """Every node the draft's beam sampling produced, depth by depth (depth d is list index d-1)."""

    tokens: list[torch.Tensor] = field(default_factory=list)  # (w_d,) token ids
    parents: list[torch.Tensor] = field(default_factory=list)  # (w_d,) index of the parent at depth d-1
    token_logq: list[torch.Tensor] = field(default_factory=list)  # (w_d,) log q(x_d | context, x1..x_{d-1})
    joint_logq: list[torch.Tensor] = field(default_factory=list)  # (w_d,) log q(x1..x_d | context)

    @property
    def depth(self) -> int:
        """Number of drafted depths."""
        return len(self.tokens)

    @property
    def widths(self) -> list[int]:
        """Number of nodes at each depth."""
        return [len(t) for t in self.tokens]

    def offsets(self) -> list[int]:
        """Flat index of the first node of each depth (nodes are laid out depth by depth)."""
        return [sum(self.widths[:d]) for d in range(self.depth)]

    def flat_parents(self) -> list[int]:
        """Each node's parent as a flat index (-1 at depth 1), in the flat depth-by-depth order."""
        offsets = self.offsets()
        return [-1] * self.widths[0] + [offsets[d - 1] + int(p) for d in range(1, self.depth) for p in self.parents[d]]

    def ancestry(self, depth: int, index: int) -> list[int]:
        """Indices (one per depth 1..depth) of the path from the root to node (depth, index)."""
        path = [index]
        for d in range(depth - 1, 0, -1):
            path.append(int(self.parents[d][path[-1]]))
        return path[::-1]

    def path_tokens(self, depth: int, index: int) -> list[int]:
        """Token ids along the path to node (depth, index)."""
        return [int(self.tokens[d][i]) for d, i in enumerate(self.ancestry(depth, index))]

    def chain(self, depth: int, index: int) -> BeamTree:
        """The single path to node (depth, index), as a one-node-per-depth tree."""
        path = self.ancestry(depth, index)
        pick = [slice(i, i + 1) for i in path]
        zero = torch.zeros(1, dtype=torch.long, device=self.tokens[0].device)
        return BeamTree(
            [t[s] for t, s in zip(self.tokens, pick, strict=True)],
            [zero] * depth,
            [t[s] for t, s in zip(self.token_logq, pick, strict=True)],
            [t[s] for t, s in zip(self.joint_logq, pick, strict=True)],
        )


def _sample_distinct(log_weights: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Up to `count` distinct flat indices drawn without replacement, with probability ∝ exp(log_weights).

    The Gumbel-top-k trick: the `count` largest of log w + Gumbel noise are distributed exactly as
    successive draws without replacement (and need one pass instead of `count` multinomial draws).
    """
    flat = log_weights.flatten()
    count = min(count, int(torch.isfinite(flat).sum()))
    uniform = torch.rand(flat.shape, generator=generator, device=flat.device).clamp_min(torch.finfo(flat.dtype).tiny)
    return (flat - torch.log(-torch.log(uniform))).topk(count).indices


def beam_sample(
    draft: PreTrainedModel,
    cache: DynamicCache,
    fresh: torch.Tensor,
    depth: int,
    num_beams: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    stop_below: float = 0.0,
    eos: int | None = None,
) -> BeamTree:
    """Beam sampling over up to `depth` tokens after `fresh` (the tokens the batch-1 `cache` lacks).

    Drafting stops early after a depth whose most likely node's newest token has draft
    probability below `stop_below` (0: always `depth`, as the paper) or is the end-of-text token
    `eos`. Leaves `cache` with one row per node of depth `tree.depth - 1` (their paths cached),
    batch 1 if that is 0.
    """
    tree = BeamTree()
    logits = draft(input_ids=fresh, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    joint = torch.zeros(1, device=fresh.device)
    for d in range(depth):
        if d == 1:
            cache.batch_repeat_interleave(tree.widths[0])  # one cache row per beam
        elif d > 1:
            cache.reorder_cache(tree.parents[-1])  # row i now holds the path of node i's parent
        if d > 0:
            logits = draft(input_ids=tree.tokens[-1][:, None], cache=cache, use_cache=True).logits[:, -1]
        log_q = torch.log(warp(logits, temperature, top_p))  # (beams, V)
        picked = _sample_distinct(joint[:, None] + log_q, num_beams, generator)
        parents, tokens = picked // log_q.shape[-1], picked % log_q.shape[-1]
        token_logq = log_q[parents, tokens]
        joint = joint[parents] + token_logq
        tree.tokens.append(tokens)
        tree.parents.append(parents)
        tree.token_logq.append(token_logq)
        tree.joint_logq.append(joint)
        best = joint.argmax()
        if (stop_below and token_logq[best].exp() < stop_below) or (eos is not None and int(tokens[best]) == eos):
            break
    return tree


def tree_attention(
    tree: BeamTree, cached: int, fresh: int, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The core `tree_attention` mask and position ids for [fresh tokens, every node of the beam tree]."""
    return token_tree.tree_attention(tree.flat_parents(), cached, fresh, dtype, device)


def target_joint_logp(tree: BeamTree, log_p: torch.Tensor) -> list[torch.Tensor]:
    """Per depth, log p(x1..xd) of every node, from the target's log-probs (1 + nodes, V).

    Row 0 is the distribution after the last context token; row 1 + j the one after flat node j.
    """
    offsets, joint = tree.offsets(), []
    for d in range(tree.depth):
        rows = torch.zeros_like(tree.parents[d]) if d == 0 else 1 + offsets[d - 1] + tree.parents[d]
        step = log_p[rows, tree.tokens[d]]
        joint.append(step if d == 0 else joint[-1][tree.parents[d]] + step)
    return joint


def select_accepted(
    joint_logp: list[torch.Tensor], joint_logq: list[torch.Tensor], log_threshold: float
) -> tuple[int, int]:
    """The MTAD rule: (deepest depth where a node passes, the passing node with the highest log p there).

    A node at depth d passes when log p(x1..xd) - max_j log q(x1..xd of node j) > log τ.
    Returns (0, 0) when no node passes at any depth.
    """
    for d in range(len(joint_logp) - 1, -1, -1):
        passing = joint_logp[d] - joint_logq[d].max() > log_threshold
        if passing.any():
            best = joint_logp[d].masked_fill(~passing, -math.inf).argmax()
            return d + 1, int(best)
    return 0, 0
