"""Kangaroo's tree mode: the self-draft grows a token tree each round, the target verifies it in one pass.

Kangaroo (Liu et al. 2024) has a tree version beside its chain; here the tree grows as in EAGLE-2
(Li et al. 2024), by cumulative confidence, under the root (the last token, which the deep layers have
not read yet). Each round:

1. draft: the shallow layers read the root and the adapter proposes its `top_k` most probable tokens
   as its children. A node's value is its parent's value times its own draft probability (rescaled to
   the acceptance seen so far when a cost curve is given: `AcceptanceCalibration`), the estimate that
   its whole path is accepted. Level by level, the `top_k` best new nodes (the frontier) run through
   the shallow layers and the adapter in one pass under a tree attention mask (each node sees the
   context and its ancestors) and propose their own `top_k` children. Growth stops when the best new
   value falls below `threshold` (the confidence exit of the paper's tree version), where the node
   budget (2.) would not verify even the best new node, at depth `max_draft_tokens`, or at the token
   budget. A copy from the context (`CopyDrafts`) is one more
   chain under the root, valued by the copy's acceptance estimates (merged where it repeats a node).
   The drafting passes wrote scratch into the shallow layers' and the adapter's caches: cut back after.
2. node budget: the nodes sorted best first (a parent before its children), and the leading ones kept
   that give the most expected tokens per unit of verification cost (`best_tree_size` on the cost
   curve; a pass the curve says is cheaper when padded is filled with the next-best nodes), at most
   `max_nodes`.
3. verify: one pass of the whole target over [root, kept nodes] with the tree mask: the shallow layers
   read the kept nodes again (simpler than keeping each drafting pass's states, and one layer of
   SmolLM2's 30), the deep layers read the exited states of [root, nodes]. `verify_tree` accepts the
   longest path (greedy: the target's argmaxes; sampling: multi-candidate rejection sampling, every
   node a point mass, since top-k picks and copies are chosen, not sampled) and the target's next token.
4. the target's cache is compacted to the accepted path (`compact_cache`, every layer), and the
   adapter is given the path's exited states to read with the next round's root.

Between rounds the invariant of `kangaroo` holds: every target layer's cache holds `sequence` but its
last token (after the first round: the deep layers read the prompt with the first verification); the
adapter's cache plus its pending exited states cover the same positions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..adapter.model import KangarooAdapter
from ..core.cache import compact_cache
from ..core.checks import eos_id, prepare_prompt
from ..core.draft_length import (
    AcceptanceCalibration,
    ContextCostCurve,
    DraftBackoff,
    curve_for,
    padded_curve,
    tree_budget,
)
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import draft_distribution, make_generator, probs_of
from ..core.token_tree import TokenTree, check_tree_support, tree_attention, verify_tree
from .copy_drafts import CopyDrafts
from .draft_rows import BACKOFF, BUDGET, COST, EOS, MAX_DRAFT_TOKENS, THRESHOLD
from .self_draft import SelfDraft


@dataclass
class DraftTree:
    """The candidate nodes of one round: a token tree, each node's path value, the adapter's probability of its
    token (None: a copy the adapter did not propose) and the copied chain's nodes."""

    tree: TokenTree = field(default_factory=TokenTree)
    values: list[float] = field(default_factory=list)
    probs: list[float | None] = field(default_factory=list)
    copied: list[int] = field(default_factory=list)

    def add(self, token: int, parent: int, value: float, prob: float | None) -> int:
        """Append a node under `parent` (-1: the root); its index."""
        self.values.append(value)
        self.probs.append(prob)
        return self.tree.add(token, parent)

    def value(self, node: int) -> float:
        """A node's path value (1 for the root)."""
        return 1.0 if node < 0 else self.values[node]

    def add_children(self, parent: int, probs: torch.Tensor, top_k: int, scale: float) -> list[int]:
        """The `top_k` most probable tokens of the draft distribution `probs` (V,) as children of `parent`."""
        top = probs.topk(min(top_k, probs.shape[-1]))
        return [self.add(token, parent, self.value(parent) * min(1.0, p * scale), p)
                for p, token in zip(top.values.tolist(), top.indices.tolist(), strict=True) if p > 0]

    def add_copy(self, tokens: list[int], estimates: list[float]) -> None:
        """A copied chain under the root, each token valued by the product of the copy's estimates so far; where
        a node with the same token is already there it is followed and its value raised."""
        node, value = -1, 1.0
        for token, estimate in zip(tokens, estimates, strict=True):
            value *= estimate
            same = [child for child in self.tree.children(node) if self.tree.tokens[child] == token]
            if same:
                node = same[0]
                self.values[node] = max(self.values[node], value)
            else:
                node = self.add(token, node, value, None)
            self.copied.append(node)

    def best_first(self) -> list[int]:
        """Every node, highest value first; a parent before its children (a child's value never exceeds its
        parent's: on ties the shallower first)."""
        return sorted(range(len(self.tree)), key=lambda node: (-self.values[node], self.tree.depth(node)))

    def subtree(self, kept: list[int]) -> TokenTree:
        """The tree of the `kept` nodes (a parent before its children), in that order."""
        index, sub = {node: i for i, node in enumerate(kept)}, TokenTree()
        for node in kept:
            sub.add(self.tree.tokens[node], index.get(self.tree.parents[node], -1))
        return sub


def _expand(model: SelfDraft, tree: TokenTree, expanded: list[int], count: int, context: int) -> torch.Tensor:
    """The draft logits (count, V) after the newest `count` of the `expanded` nodes (every node the shallow
    layers and the adapter have read, in the order they read them): one pass under a tree mask."""
    order = {node: i for i, node in enumerate(expanded)}
    parents = [order.get(tree.parents[node], -1) for node in expanded]  # an expanded node's parent was expanded
    mask, positions = tree_attention(parents, context, 0, model.embed.weight.dtype, model.embed.weight.device)
    mask, positions = mask[:, :, -count:], positions[:, -count:]
    tokens = torch.tensor([[tree.tokens[node] for node in expanded[-count:]]], device=positions.device)
    return model.draft_nodes(model.shallow_rows(tokens, positions, mask), positions, mask)


def grow(model: SelfDraft, root: tuple[torch.Tensor, tuple], context: int, depth: int, top_k: int,
         threshold: float, scale: float, temperature: float, top_p: float, eos: int | None,
         budget: Callable[[list[float]], int]) -> tuple[DraftTree, int, str]:
    """Grow the adapter's tree under the root (its exited state and RoPE at `context` - 1) level by level.

    Growth also stops once the node `budget` (values best first → nodes verified) would not verify even the
    best new node (the nodes below it are valued no higher). Returns the tree, the adapter's most probable
    token after the root and what stopped growth. Leaves the drafting passes' scratch in the shallow layers'
    and the adapter's caches (`SelfDraft.rollback` cuts it).
    """
    grown, frontier, expanded = DraftTree(), [-1], []
    logits = model.draft(*root, context - 1)[None]
    first_choice = int(logits[0].argmax())
    for level in range(1, depth + 1):
        probs = draft_distribution(logits, temperature, top_p)
        new = [child for parent, row in zip(frontier, probs, strict=True)
               for child in grown.add_children(parent, row, top_k, scale)]
        best = sorted(new, key=lambda node: -grown.values[node])
        if not best or grown.values[best[0]] < threshold:
            return grown, first_choice, THRESHOLD
        ranked = sorted(grown.values, reverse=True)
        if budget(ranked) <= ranked.index(grown.values[best[0]]):
            return grown, first_choice, COST
        frontier = [node for node in best if grown.tree.tokens[node] != eos][:top_k]  # nothing follows the end
        if not frontier:
            return grown, first_choice, EOS
        if level == depth:
            break
        expanded += frontier
        logits = _expand(model, grown.tree, expanded, len(frontier), context)
    return grown, first_choice, MAX_DRAFT_TOKENS


def _verify(model: SelfDraft, exited: torch.Tensor, tree: TokenTree,
            context: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One pass of the whole target over [the exited states the deep layers have not read (ending with the
    root's), the tree's nodes]: the target's logits (1 + nodes, V) and the nodes' exited states (1, nodes, h)."""
    fresh, nodes, dtype = exited.shape[1], len(tree), model.embed.weight.dtype
    mask, positions = tree.attention(context - fresh, fresh, dtype, exited.device)
    states = None
    if nodes:  # the node rows of the mask: the shallow layers hold the whole context, root included
        tokens = torch.tensor([tree.tokens], device=exited.device)
        states = model.shallow_rows(tokens, positions[:, -nodes:], mask[:, :, -nodes:])
        exited = torch.cat([exited, states], dim=1)
    return model.deep_rows(exited, positions, mask, keep_last=1 + nodes)[0], states


def _step(grown: DraftTree, kept: list[int], tree: TokenTree, path: list[int], token: int,
          target_logits: torch.Tensor, temperature: float, top_p: float) -> Step:
    """The round's record: the accepted path then the first child below its end as its drafts; the verified
    `tree` (kept from `grown`'s nodes `kept`), its size and depth, the `path` and its leading copied tokens."""
    drafted = path + tree.children(path[-1] if path else -1)[:1]
    copied = next((i for i, node in enumerate(path) if kept[node] not in grown.copied), len(path))
    step = Step(
        emitted=[tree.tokens[node] for node in path] + [token],
        drafted=[tree.tokens[node] for node in drafted],
        accepted=len(path),
        info=dict(tree_nodes=len(tree), tree_depth=max(map(tree.depth, range(len(tree))), default=0),
                  tree=dict(tokens=tree.tokens, parents=tree.parents), path=path, copied=copied),
    )
    if drafted:
        rows = [0] + [1 + node for node in path]  # the target's row before each drafted token
        step.target_probs = probs_of(target_logits[rows[: len(drafted)]], step.drafted, temperature, top_p)
        step.draft_probs = [1.0 if grown.probs[kept[node]] is None else grown.probs[kept[node]] for node in drafted]
    return step


def _calibrate(calibration: AcceptanceCalibration, grown: DraftTree, kept: list[int], tree: TokenTree,
               path: list[int]) -> None:
    """Record the adapter's children of every node the walk reached (each was tried) against the adapter's
    nodes it accepted, pooled into one record."""
    reached = [kept[child] for node in [-1, *path] for child in tree.children(node)]
    offered = [grown.probs[node] for node in reached if grown.probs[node] is not None]
    calibration.update([sum(offered)], sum(grown.probs[kept[node]] is not None for node in path))


@torch.inference_mode()
def kangaroo_tree(
    target: PreTrainedModel,
    adapter: KangarooAdapter,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    max_draft_tokens: int = 6,
    threshold: float = 0.6,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    on_round: Callable[[SelfDraft, torch.Tensor], None] | None = None,
    cost_curve: Mapping[int, float] | ContextCostCurve | None = None,
    backoff: int = 4,
    copy_drafts: bool = True,
    max_copy_tokens: int = 8,
    min_match: int = 1,
    top_k: int = 3,
    max_nodes: int = 12,
) -> DecodingResult:
    """Kangaroo's tree mode for one prompt (`kangaroo(..., tree=True)`, which checks the shared arguments).

    `max_draft_tokens` is the tree's depth, `threshold` the confidence exit on the best new path value,
    `top_k` the children of a node and the nodes expanded per level, `max_nodes` the most nodes verified.
    Each step's `info`: `exit_layer`, `tree_nodes` and `tree_depth` (of the verified tree, chosen from
    `candidates` nodes), `tree` (its
    `tokens` and `parents`), `path` (the accepted nodes), `copied` (accepted copied tokens, leading the path),
    `draft_stop` ("threshold", "cost", "eos", "max_draft_tokens", "budget" or "backoff"), and with a cost curve
    `calibration`. `drafted` is the accepted path then the first child below its end, if any.
    """
    check_tree_support(target, "tree mode")
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("kangaroo_tree", ids[0].tolist(), max_new_tokens, eos_id(target))
    pause = DraftBackoff(backoff if cost_curve is not None else 0)
    model = SelfDraft(target, adapter)
    # drafting scratch (at most top_k nodes per level) or the verified tree runs past the sequence for a while
    model.check_window(ids.shape[1] + max_new_tokens + max(top_k * max_draft_tokens, max_nodes))
    copies = CopyDrafts(ids[0].tolist(), max_copy_tokens, min_match) if copy_drafts else None
    calibration = AcceptanceCalibration()

    sequence, unread = ids, None  # unread: exited states the deep layers have not read yet (the prompt's)
    if ids.shape[1] > 1:
        unread, _ = model.shallow(ids[:, :-1], 0)
        model.defer(unread)

    while not recorder.done:
        context = sequence.shape[1]
        depth = min(max_draft_tokens, recorder.remaining - 1)  # never draft past max_new_tokens
        measured = None if cost_curve is None else curve_for(cost_curve, context)
        curve = None if measured is None else padded_curve(measured)
        scale = calibration.scale if cost_curve is not None else 1.0
        budget = functools.partial(tree_budget, curve=measured, max_nodes=max_nodes)
        drafts = depth > 0 and pause.drafts_now()
        root = model.shallow(sequence[:, -1:], context - 1)
        if drafts:
            grown, first_choice, stop = grow(model, root, context, depth, top_k, threshold, scale, temperature,
                                             top_p, recorder.eos_token_id, budget)
            model.rollback(context)  # drop the drafting scratch; the adapter keeps the root it read
        else:
            grown, first_choice, stop = DraftTree(), None, BACKOFF if depth > 0 else BUDGET
            model.defer(root[0])
        if copies is not None and depth > 0 and copies.on_offer():  # no rival: it competes for the node budget
            copied = copies.propose(recorder.remaining - 1, curve, 0.0, first_choice)
            grown.add_copy(copied, copies.confidences(len(copied)))

        # The node budget: the leading nodes best first, worth their verification cost.
        order = grown.best_first()
        keep = budget([grown.values[node] for node in order])
        if drafts:
            pause.update(keep)
        kept = order[:keep]
        tree = grown.subtree(kept)

        # Verify [root, kept nodes] in one pass of the whole target and accept a path.
        exited = root[0] if unread is None else torch.cat([unread, root[0]], dim=1)
        unread = None
        target_logits, states = _verify(model, exited, tree, context)
        path, token = verify_tree(tree, target_logits, temperature, top_p, generator)
        compact_cache(model.cache, context, path)
        if path:  # the adapter reads the path's exited states with the next root
            model.defer(states[:, path])

        step = _step(grown, kept, tree, path, token, target_logits, temperature, top_p)
        step.info.update(exit_layer=model.exit_layer, candidates=len(grown.tree), draft_stop=stop)
        if cost_curve is not None:
            step.info["calibration"] = calibration.scale
            _calibrate(calibration, grown, kept, tree, path)
        emitted = recorder.record(step)
        if copies is not None:
            copies.record(sum(node in grown.copied for node in kept), step.info["copied"], emitted)
        sequence = torch.cat([sequence, torch.tensor([emitted], device=ids.device)], dim=1)
        model.rollback(sequence.shape[1] - 1)  # only where the text ended inside the path
        if on_round is not None:
            on_round(model, sequence)
    return recorder.finish(tokenizer)
