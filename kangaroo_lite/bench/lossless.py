"""Losslessness, checked honestly: equal greedy outputs, or a difference that starts at a near-tie.

In exact arithmetic greedy speculative decoding returns the target's own greedy output. In fp32 a
verification pass over several tokens may round differently from a pass over one, so where the
target's top two logits are within rounding of each other the argmax may flip. A difference is
therefore accepted only when, at the first differing token, the top-2 logit margin in the
*baseline's own* logits (its one-token-at-a-time passes) is below `NEAR_TIE`; any other
difference is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

NEAR_TIE = 1e-4  # top-2 logit margin below which fp32 rounding may flip the argmax


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first position where two token lists differ (None when one is a prefix of the other)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@torch.inference_mode()
def baseline_margin(target: PreTrainedModel, prompt_ids: torch.Tensor, tokens: Sequence[int], position: int) -> float:
    """Top-2 logit margin of the baseline's logits for new token `position`, computed as autoregressive decoding does.

    The prompt is read in one pass, then the baseline's tokens one at a time with the KV cache.
    """
    cache = DynamicCache(config=target.config)
    logits = target(input_ids=prompt_ids, cache=cache, use_cache=True).logits[0, -1]
    for token in tokens[:position]:
        logits = target(input_ids=torch.tensor([[token]], device=prompt_ids.device), cache=cache,
                        use_cache=True).logits[0, -1]
    top2 = logits.float().topk(2).values
    return float(top2[0] - top2[1])


def classify_outputs(target: PreTrainedModel, prompts: Sequence[torch.Tensor], baseline: Sequence[Sequence[int]],
                     outputs: Sequence[Sequence[int]]) -> dict:
    """Identity rate of `outputs` against `baseline`, each difference explained by a near-tie or listed as a bug."""
    near_ties, bugs = [], []
    for index, (ids, base, out) in enumerate(zip(prompts, baseline, outputs, strict=True)):
        position = first_difference(base, out)
        if position is None:
            continue
        if position >= min(len(base), len(out)):  # one stopped early: a length difference is never a near-tie
            bugs.append({"prompt": index, "position": position, "margin": None})
            continue
        margin = baseline_margin(target, ids, base, position)
        (near_ties if margin < NEAR_TIE else bugs).append({"prompt": index, "position": position, "margin": margin})
    total = len(prompts)
    identical = total - len(near_ties) - len(bugs)
    return {"identity_rate": identical / total if total else 1.0, "identical": identical, "total": total,
            "near_ties": near_ties, "bugs": bugs}
