"""Medusa decoding (Cai et al. 2024): candidates from the heads' top-k, verified as one token tree.

Each round starts from the token the target chose last (not yet read: it is the root) and the
target's final hidden state that chose it. Head k reads that state and scores the token k
places after the root; its top-k are the candidates at depth k. Medusa's sparse tree is grown
best-first over their products: a node's value is the product of its path's head probabilities,
and the tree holds the `max_nodes` most valuable paths (a parent is always worth at least its
child, so any leading run of them is a tree). With a cost curve only the leading nodes worth
their verification cost are kept (`core.draft_length.best_tree_size`), their values first
rescaled to the acceptance this generation has seen. The target reads [root, nodes] once with
a tree attention mask; the longest acceptable path is kept (`core.token_tree.verify_tree`:
greedy, or lossless multi-candidate rejection sampling, top-k picks being point masses), the
target's cache is compacted to it, and the state at its end feeds the heads for the next round.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..adapter.medusa import MedusaHeads
from ..core.batch import as_batch
from ..core.cache import compact_cache
from ..core.checks import check_positive, eos_id, prepare_prompt
from ..core.draft_length import AcceptanceCalibration, ContextCostCurve, curve_for, tree_budget
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, draft_distribution, make_generator, next_token
from ..core.token_tree import TokenTree, check_tree_support, verify_tree


def product_tree(candidates: list[tuple[list[int], list[float]]], max_nodes: int) -> tuple[TokenTree, list[float]]:
    """The `max_nodes` most valuable paths through per-depth candidates (tokens, probabilities; best first).

    A path picks one candidate per depth from the first on; its value is the product of their
    probabilities. Nodes come out best-first (ties: the earlier found), each after its parent.
    """
    tree, values = TokenTree(), []
    if not candidates or max_nodes < 1:
        return tree, values
    frontier = [(-candidates[0][1][0], 0, -1, 0, 0, 1.0)]  # (-value, order, parent node, depth, rank, parent value)
    order = 1
    while frontier and len(tree) < max_nodes:
        negative, _, parent, depth, rank, parent_value = heapq.heappop(frontier)
        tokens, probs = candidates[depth]
        node = tree.add(tokens[rank], parent)
        values.append(-negative)
        if rank + 1 < len(tokens):  # the next sibling
            heapq.heappush(frontier, (-parent_value * probs[rank + 1], order, parent, depth, rank + 1, parent_value))
            order += 1
        if depth + 1 < len(candidates):  # the best child
            heapq.heappush(frontier, (negative * candidates[depth + 1][1][0], order, node, depth + 1, 0, -negative))
            order += 1
    return tree, values


@torch.inference_mode()
def medusa(
    target: PreTrainedModel,
    heads: MedusaHeads,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    top_k: int = 4,
    max_nodes: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    cost_curve: Mapping[int, float] | ContextCostCurve | None = None,
    attention_mask: torch.Tensor | None = None,
) -> DecodingResult:
    """Medusa decoding with a token tree of up to `max_nodes` nodes, `top_k` candidates per head: lossless.

    Each step's `info` records `tree_nodes` (nodes verified) and `tree_depth`; `drafted` is the
    accepted path followed by the first node below its end (when the tree has one), so that
    `acceptance_by_position` reads "accepted at depth i where the tree offered depth i". With a
    `cost_curve` (as `kangaroo` takes it) the tree is cut to the nodes worth their cost, then filled
    up to a cheaper padded size when the curve has one. One prompt at a time.
    """
    check_sampling(temperature, top_p)
    check_positive("top_k", top_k)
    check_positive("max_nodes", max_nodes)
    if not isinstance(heads, MedusaHeads):
        raise TypeError(f"heads must be MedusaHeads, got {type(heads).__name__}")
    heads.check_matches(target)
    check_tree_support(target, "Medusa")
    if as_batch(input_ids, attention_mask) is not None:
        raise ValueError("Medusa decodes one prompt at a time: pass a single prompt")
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("medusa", ids[0].tolist(), max_new_tokens, eos_id(target))
    calibration = AcceptanceCalibration()
    cache = DynamicCache(config=target.config)
    states = target.model(input_ids=ids, cache=cache, use_cache=True).last_hidden_state[0, -1:]
    token = next_token(target.lm_head(states)[0], temperature, top_p, generator)
    recorder.record(Step(emitted=[token]))
    sequence = ids[0].tolist() + [token]

    while not recorder.done:
        cached = len(sequence) - 1
        depths = min(heads.num_heads, recorder.remaining - 1)
        logits = heads.vocab_logits(states[-1], target)[:depths]
        probs = draft_distribution(logits, temperature, top_p)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        candidates = [(t.tolist(), p.tolist()) for t, p in zip(top.indices, top.values, strict=True)]
        tree, values = product_tree(candidates, max_nodes)
        if cost_curve is not None:
            scale = calibration.scale
            estimates = [min(1.0, v * scale ** tree.depth(i)) for i, v in enumerate(values)]
            keep = tree_budget(estimates, curve_for(cost_curve, len(sequence)), max_nodes)
            tree = TokenTree(tree.tokens[:keep], tree.parents[:keep], tree.draft_probs[:keep])
        mask, positions = tree.attention(cached, 1, target.dtype, ids.device)
        fresh = torch.tensor([[token, *tree.tokens]], device=ids.device)
        out = target.model(input_ids=fresh, attention_mask=mask, position_ids=positions, cache=cache,
                           use_cache=True).last_hidden_state[0]
        path, token = verify_tree(tree, target.lm_head(out), temperature, top_p, generator)
        compact_cache(cache, cached + 1, path)
        end = path[-1] if path else -1
        below = tree.children(end)[:1]
        drafted = tree.path_tokens(end) + [tree.tokens[i] for i in below]
        factors = [probs[tree.depth(i) - 1, tree.tokens[i]].item() for i in [*path, *below]]
        calibration.update(factors, len(path))
        step = Step(emitted=tree.path_tokens(end) + [token], drafted=drafted, accepted=len(path),
                    info=dict(tree_nodes=len(tree), tree_depth=max(map(tree.depth, range(len(tree))), default=0),
                              calibration=calibration.scale))
        sequence += recorder.record(step)
        states = out[1 + end : 2 + end]
    return recorder.finish(tokenizer)
