"""Kangaroo against Medusa, position by position: the consistent token acceptance rate (CTAR).

Kangaroo's paper compares drafters by CTAR(k): the chance that the first k drafts after the
target's last token are all right. It is read off the target's greedy replies without decoding:
from each reply token as the root, Kangaroo's chain is right for as many drafts as the
self-draft's teacher-forced top-1 matches the reply in a row (its drafts follow the reply while
they are right); Medusa's head k, reading the state that chose the root, proposes the token k
places after it, and the heads are right for as many k in a row as their top-1 match.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from ..adapter.medusa import MedusaHeads
from ..adapter.model import KangarooAdapter
from .draft_bounds import adapter_top1, chain_runs, matching_runs


@torch.inference_mode()
def medusa_runs(target: PreTrainedModel, heads: MedusaHeads, prompt: Sequence[int],
                reply: Sequence[int]) -> list[int]:
    """Per reply position i ≥ 1 (the root reply[i - 1]): how many of the heads' top-1 drafts are right in a row."""
    ids = torch.tensor([list(prompt) + list(reply)], device=target.device)
    states = target.model(input_ids=ids).last_hidden_state[0]
    chose_root = states[len(prompt) - 1 : len(prompt) - 1 + len(reply) - 1]  # the state that chose reply[i - 1]
    proposals = heads.vocab_logits(chose_root, target).argmax(-1).tolist()  # (len(reply) - 1, K)
    return matching_runs(proposals, list(reply)[1:])


def kangaroo_runs(target: PreTrainedModel, adapter: KangarooAdapter, prompt: Sequence[int], reply: Sequence[int],
                  longest: int) -> list[int]:
    """Per reply position i ≥ 1: how many of the self-draft's chained greedy drafts from reply[i - 1] are right."""
    return chain_runs(adapter_top1(target, adapter, prompt, reply), reply, longest)[1:]


def ctar(runs: Sequence[int], longest: int) -> list[float]:
    """CTAR(k) for k = 1 … `longest`: the share of positions whose first k drafts are all right."""
    return [sum(run >= k for run in runs) / max(len(runs), 1) for k in range(1, longest + 1)]


def compare_ctar(target: PreTrainedModel, adapter: KangarooAdapter, heads: MedusaHeads,
                 replies: Sequence[tuple[str, Sequence[int], Sequence[int]]]) -> dict[str, dict]:
    """{subtask and "overall": {"kangaroo": CTAR list, "medusa": CTAR list, "positions": n}} over (subtask, prompt,
    greedy reply) triples, for draft positions 1 … the number of Medusa heads."""
    longest = heads.num_heads
    runs: dict[str, dict[str, list[int]]] = {}
    for subtask, prompt, reply in replies:
        if len(reply) < 2:
            continue
        found = {"kangaroo": kangaroo_runs(target, adapter, prompt, reply, longest),
                 "medusa": medusa_runs(target, heads, prompt, reply)}
        for group in (subtask, "overall"):
            for name, values in found.items():
                runs.setdefault(group, {}).setdefault(name, []).extend(values)
    groups = [group for group in runs if group != "overall"] + ["overall"]
    return {group: {**{name: ctar(values, longest) for name, values in runs[group].items()},
                    "positions": len(runs[group]["kangaroo"])} for group in groups if group in runs}
