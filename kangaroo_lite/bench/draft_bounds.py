"""How fast chain drafting could possibly be on this machine: the hindsight bound of each draft source.

Given the target's greedy reply, the tokens a source would draft at each position can be read off
without decoding: the adapter's chain from a position is right for as many tokens as its
teacher-forced top-1 matches the reply in a row (its drafts follow the reply while they are right),
a copy for as many as the context's continuation matches. A policy that knew those run lengths in
advance would pick, each round, the source and the number of drafts that reach the end of the reply
at the least total cost, Σ v(drafts + 1) + c · (adapter drafts): `chain_bound` finds that by dynamic
programming. No real policy does better than the bound (it cannot know what will be accepted); how
far below it one stays is what its decisions cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedModel

from ..adapter.model import KangarooAdapter
from ..core.context_index import ContextIndex
from ..core.draft_length import ContextCostCurve, curve_at, curve_for, padded_curve
from ..decoding.self_draft import SelfDraft


def matching_runs(proposals: Sequence[Sequence[int]], reply: Sequence[int]) -> list[int]:
    """Per reply position i: how many leading tokens of `proposals[i]` equal the reply from i on."""
    if len(proposals) != len(reply):
        raise ValueError(f"{len(proposals)} proposals for a reply of {len(reply)} tokens")
    runs = []
    for i, proposal in enumerate(proposals):
        run = 0
        while run < len(proposal) and i + run < len(reply) and proposal[run] == reply[i + run]:
            run += 1
        runs.append(run)
    return runs


def chain_runs(top1: Sequence[int], reply: Sequence[int], longest: int = 8) -> list[int]:
    """Per position: how many of a greedy drafter's chained drafts would be right, from its teacher-forced
    top-1 predictions (`top1[i]` predicts `reply[i]`), at most `longest`."""
    return matching_runs([top1[i: i + longest] for i in range(len(top1))], reply)


def copy_runs(prompt: Sequence[int], reply: Sequence[int], longest: int = 8, min_match: int = 1) -> list[int]:
    """Per position: how many of the copied tokens the context offers there would be right (0 where none)."""
    index, proposals = ContextIndex(prompt, min_match, 16), []
    for token in reply:
        proposals.append(index.propose(longest))
        index.extend([token])
    return matching_runs(proposals, reply)


@torch.inference_mode()
def adapter_top1(target: PreTrainedModel, adapter: KangarooAdapter, prompt: Sequence[int],
                 reply: Sequence[int]) -> list[int]:
    """The self-draft's teacher-forced most probable token at each reply position (over its draft vocabulary)."""
    model = SelfDraft(target, adapter)
    ids = torch.tensor([list(prompt) + list(reply)], device=target.device)
    hidden, rope = model.shallow(ids, 0)
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    out = adapter(hidden, rope, attention_mask=adapter.causal_mask(hidden, positions))
    logits = model.draft_head(out[0, len(prompt) - 1: len(prompt) - 1 + len(reply)])
    top = logits.argmax(-1)
    return (top if model.draft_vocab is None else model.draft_vocab.to(top.device)[top]).tolist()


def chain_bound(runs: Mapping[str, Sequence[int]], curve: Mapping[int, float],
                draft_cost: Mapping[str, float] | None = None, longest: int = 8) -> float:
    """The least cost, in target passes, of producing a reply whose sources' right-run lengths are `runs`
    (source → per position). Each round verifies up to `longest` drafts at the cost `curve` gives plus
    `draft_cost[source]` per draft: drafts of one source, or of one source and then another (as Kangaroo
    drafts with its adapter after a copy; the second's drafts count only if the first's were all right)."""
    lengths = {len(r) for r in runs.values()}
    if len(lengths) > 1:
        raise ValueError(f"every source needs one run per position, got lengths {sorted(lengths)}")
    size = lengths.pop() if lengths else 0
    draft_cost = draft_cost or {}
    best = [0.0] * (size + 1)

    def right(source: str, position: int, drafts: int) -> int:
        return min(runs[source][position], drafts) if position < size else 0

    for i in range(size - 1, -1, -1):
        options = [curve_at(curve, 1) + best[i + 1]]
        for first in runs:
            for k in range(1, longest + 1):
                accepted, spent = right(first, i, k), draft_cost.get(first, 0.0) * k
                options.append(curve_at(curve, k + 1) + spent + best[min(size, i + accepted + 1)])
                if accepted < k:  # drafts after a wrong one are never accepted
                    continue
                for then in (source for source in runs if source != first):
                    for j in range(1, longest - k + 1):
                        more = accepted + right(then, i + k, j)
                        options.append(curve_at(curve, k + j + 1) + spent + draft_cost.get(then, 0.0) * j
                                       + best[min(size, i + more + 1)])
        best[i] = min(options)
    return best[0]


SOURCES = {"adapter": ("adapter",), "copies": ("copy",), "adapter or copies": ("adapter", "copy")}
"""The draft sources each bound may choose from, every round."""


def hindsight_bounds(target: PreTrainedModel, adapter: KangarooAdapter,
                     replies: Sequence[tuple[str, Sequence[int], Sequence[int]]],
                     cost_curve: Mapping[int, float] | ContextCostCurve, longest: int = 8) -> dict[str, dict]:
    """{subtask and "overall": {sources: the hindsight bound on the speedup, "tokens": …}} for (subtask, prompt,
    greedy reply) triples: free drafts, a verification pass over n tokens at the (padded) measured cost."""
    tokens: dict[str, int] = {}
    costs: dict[str, dict[str, float]] = {}
    for subtask, prompt, reply in replies:
        curve = padded_curve(curve_for(cost_curve, len(prompt)))
        runs = {"adapter": chain_runs(adapter_top1(target, adapter, prompt, reply), reply, longest),
                "copy": copy_runs(prompt, reply, longest)}
        for group in (subtask, "overall"):
            tokens[group] = tokens.get(group, 0) + len(reply)
            for name, sources in SOURCES.items():
                cost = chain_bound({s: runs[s] for s in sources}, curve, longest=longest)
                costs.setdefault(group, {})[name] = costs.get(group, {}).get(name, 0.0) + cost
    groups = [group for group in tokens if group != "overall"] + ["overall"]
    return {group: {**{name: tokens[group] / cost for name, cost in costs[group].items()}, "tokens": tokens[group]}
            for group in groups}
