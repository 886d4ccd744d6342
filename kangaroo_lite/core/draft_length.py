"""How many drafts to verify, given what a verification pass costs on this machine.

On a GPU a pass over a few more tokens costs about what a pass over one does, so every draft is
worth verifying. On a CPU it is not: for SmolLM2 a pass over 3 tokens costs 1.16 passes over
one, over 4 already 1.65. Each draft is accepted (if all before it were) with roughly its
confidence, so verifying the first k drafts yields 1 + Σ_{i≤k} c_1⋯c_i tokens in expectation
for cost(k + 1). `best_draft_length` keeps the k that gives the most tokens per unit of cost,
with the cost curve measured on the machine (`bench.cost_model.cost_curve`). Any k is lossless:
the target verifies what is kept; only the speed changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def curve_at(curve: Mapping[int, float], tokens: int) -> float:
    """The relative cost of a pass over `tokens` new tokens (the largest measured size beyond the curve)."""
    if tokens in curve:
        return curve[tokens]
    sizes = sorted(curve)
    below = [n for n in sizes if n <= tokens]
    return curve[below[-1]] if below else curve[sizes[0]]


def best_draft_length(confidences: Sequence[float], curve: Mapping[int, float]) -> int:
    """The number of leading drafts whose verification gives the most expected tokens per unit of cost."""
    best, best_rate, expected, survival = 0, 1.0 / curve_at(curve, 1), 1.0, 1.0
    for k, confidence in enumerate(confidences, start=1):
        survival *= confidence
        expected += survival
        rate = expected / curve_at(curve, k + 1)
        if rate > best_rate:
            best, best_rate = k, rate
    return best
