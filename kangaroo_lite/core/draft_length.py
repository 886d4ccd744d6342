"""How many drafts to verify, given what a verification pass costs on this machine.

On a GPU a pass over a few more tokens costs about what a pass over one does, so every draft is
worth verifying. On a CPU it is not: for SmolLM2 a pass over 3 tokens costs 1.16 passes over
one, over 4 already 1.65. Each draft is accepted (if all before it were) with roughly its
confidence, so verifying the first k drafts yields 1 + Σ_{i≤k} c_1⋯c_i tokens in expectation
for cost(k + 1). `best_draft_length` keeps the k that gives the most tokens per unit of cost,
with the cost curve measured on the machine (`bench.cost_model.cost_curve`). Any k is lossless:
the target verifies what is kept; only the speed changes.

A drafter's confidence is an acceptance estimate only where it is calibrated. SmolLM2's adapter,
trained on the project's prompts, is overconfident on real questions (mean top-1 probability
0.41, agreement 0.24), so `AcceptanceCalibration` rescales confidences by what this generation
has actually accepted: the method notices when its drafts are mostly rejected and drafts less.

Verification attends over the whole context, so on a CPU a pass over a few tokens costs relatively
more after a long prompt (SmolLM2: a pass over 2 tokens costs 1.08 passes over one after 151
tokens, 1.22 after 769). `ContextCostCurve` holds curves measured over contexts of several
lengths, and each round reads the one for its own context (`curve_for`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .checks import check_non_negative


def curve_at(curve: Mapping[int, float], tokens: int) -> float:
    """The relative cost of a pass over `tokens` new tokens: linear between the measured sizes around it,
    the nearest measured size's outside them."""
    if tokens in curve:
        return curve[tokens]
    sizes = sorted(curve)
    below, above = [n for n in sizes if n < tokens], [n for n in sizes if n > tokens]
    if not below or not above:
        return curve[below[-1] if below else above[0]]
    low, high = below[-1], above[0]
    return curve[low] + (curve[high] - curve[low]) * (tokens - low) / (high - low)


class ContextCostCurve:
    """Cost curves {tokens: relative cost} measured over contexts of several lengths, read at any length."""

    def __init__(self, curves: Mapping[int, Mapping[int, float]]):
        if not curves:
            raise ValueError("ContextCostCurve needs at least one measured curve")
        self.curves = {int(length): dict(curve) for length, curve in sorted(curves.items())}

    def at(self, context: int) -> dict[int, float]:
        """The curve for a context of `context` tokens: linear between the two nearest measured lengths
        (each read with `curve_at` at every size either measured), the nearest one's outside them."""
        lengths = list(self.curves)
        if context <= lengths[0] or len(lengths) == 1:
            return self.curves[lengths[0]]
        if context >= lengths[-1]:
            return self.curves[lengths[-1]]
        high = next(length for length in lengths if length >= context)
        low = lengths[lengths.index(high) - 1]
        weight = (context - low) / (high - low)
        return {n: (1 - weight) * curve_at(self.curves[low], n) + weight * curve_at(self.curves[high], n)
                for n in sorted(self.curves[low].keys() | self.curves[high].keys())}


def curve_for(cost_curve: Mapping[int, float] | ContextCostCurve, context: int) -> Mapping[int, float]:
    """The cost curve a round over a context of `context` tokens uses."""
    return cost_curve.at(context) if isinstance(cost_curve, ContextCostCurve) else cost_curve


def padded_size(curve: Mapping[int, float], tokens: int) -> int:
    """How many tokens a pass over `tokens` should run to cost least: itself, or a measured size above it
    that costs less (on some CPUs a matrix product over 2 or 3 rows is slower than over 4, so a
    verification pass padded with filler tokens, whose results are discarded, is cheaper)."""
    cost, best = curve_at(curve, tokens), tokens
    for size in sorted(n for n in curve if n > tokens):
        if curve[size] < cost:
            cost, best = curve[size], size
    return best


def padded_curve(curve: Mapping[int, float]) -> dict[int, float]:
    """The cost of a pass over n tokens when it may be padded (`padded_size`): the lower envelope from above."""
    return {n: curve_at(curve, padded_size(curve, n)) for n in curve}


def best_draft_length(confidences: Sequence[float], curve: Mapping[int, float], sampled_from: int | None = None) -> int:
    """The number of leading drafts whose verification gives the most expected tokens per unit of cost.

    Drafts from index `sampled_from` on were sampled: whether such a draft is verified must not depend
    on its own value, which the confidences of the drafts after it do (each is the top probability of
    a distribution conditioned on it). So the drafts before `sampled_from` (copies, fixed before any
    sampling) are cut on their own, and only if all of them are kept does a sampled draft follow, each
    as long as it raises the rate given the ones before it. None: every draft is fixed (greedy).
    """
    rates = [1.0 / curve_at(curve, 1)]
    expected, survival = 1.0, 1.0
    for k, confidence in enumerate(confidences, start=1):
        survival *= confidence
        expected += survival
        rates.append(expected / curve_at(curve, k + 1))
    fixed = len(confidences) if sampled_from is None else min(sampled_from, len(confidences))
    best = max(range(fixed + 1), key=lambda k: (rates[k], -k))  # the shortest of the best
    if best == fixed:
        while best < len(confidences) and rates[best + 1] > rates[best]:
            best += 1
    return best


def best_tree_size(path_values: Sequence[float], curve: Mapping[int, float] | None, fresh: int = 1,
                   limit: int | None = None) -> int:
    """How many of a tree's nodes to verify: the leading ones giving the most expected tokens per unit of cost.

    `path_values` are the nodes' estimates that their whole path is accepted, in an order where a parent
    precedes its children and values do not rise (best-first growth by cumulative confidence), so that any
    leading run is a tree. Verifying the first n yields 1 + Σ their values in expectation (each accepted
    path node is one token, plus the target's own) for the cost of a pass over `fresh` + n tokens. Without a
    curve every pass costs the same: all nodes (up to `limit`). Among equal rates the smallest tree wins.
    """
    count = len(path_values) if limit is None else min(limit, len(path_values))
    if curve is None:
        return count
    best, best_rate, expected = 0, 1.0 / curve_at(curve, fresh), 1.0
    for n, value in enumerate(path_values[:count], start=1):
        expected += value
        rate = expected / curve_at(curve, fresh + n)
        if rate > best_rate:
            best, best_rate = n, rate
    return best


def tree_budget(values: Sequence[float], curve: Mapping[int, float] | None, max_nodes: int) -> int:
    """How many of a tree's nodes, best first (`values`, not rising), one pass verifies: those worth their cost
    (`best_tree_size` on the padded `curve`; all without a curve), at most `max_nodes`; where the measured `curve`
    says a bigger pass is cheaper (`padded_size`), its padding slots hold the next-best nodes."""
    if curve is None:
        return min(len(values), max_nodes)
    keep = best_tree_size(values, padded_curve(curve), fresh=1, limit=max_nodes)
    return min(len(values), max_nodes, padded_size(curve, 1 + keep) - 1)


@dataclass
class AcceptanceCalibration:
    """Online correction of draft confidences to the acceptance observed so far in one generation.

    Each verified draft that the target reached (every draft before it accepted) adds its
    confidence to `expected` and 1 or 0 to `accepted`; confidences are then scaled by
    accepted / expected. `prior` pseudo-drafts at a ratio of 1 keep the first rounds near the raw
    confidences.
    """

    prior: float = 4.0
    expected: float = 0.0
    accepted: float = 0.0

    @property
    def scale(self) -> float:
        """Accepted drafts per unit of confidence, so far (1.0 before any evidence)."""
        return (self.accepted + self.prior) / (self.expected + self.prior)

    def corrected(self, confidences: Sequence[float]) -> list[float]:
        """The confidences as acceptance estimates: scaled, capped at 1."""
        return [min(1.0, c * self.scale) for c in confidences]

    def best(self, calibrated: bool = True) -> float:
        """The acceptance estimate of a draft of confidence 1 (1.0 uncalibrated): the most a drafter is worth now."""
        return self.corrected([1.0])[0] if calibrated else 1.0

    def update(self, confidences: Sequence[float], accepted: int) -> None:
        """Record one verification: the drafts' raw `confidences` and how many of them were accepted."""
        reached = confidences[: accepted + 1]
        self.expected += sum(reached)
        self.accepted += accepted


@dataclass
class DraftBackoff:
    """Skip drafting for a while after rounds whose drafts were not worth verifying.

    After such a round the next round does not draft; if the round after that again verifies
    nothing, the next two skip, then four, up to `longest` rounds in a row. A round that
    verifies a draft starts over. `longest=0` never skips.
    """

    longest: int = 4
    skip: int = 0  # rounds the last pause skipped
    wait: int = 0  # rounds still to skip

    def __post_init__(self) -> None:
        check_non_negative("backoff", self.longest)

    def drafts_now(self) -> bool:
        """Whether this round drafts (a skipped round counts down the pause)."""
        if self.wait:
            self.wait -= 1
            return False
        return True

    def update(self, verified: int) -> None:
        """Record a round that drafted and then verified `verified` of its drafts."""
        if verified or not self.longest:
            self.skip = 0
            return
        self.skip = min(2 * self.skip or 1, self.longest)
        self.wait = self.skip


@dataclass
class AcceptanceRate:
    """The share of one draft source's drafts that the target accepted where it reached them, in one generation.

    A draft is reached when every draft before it in its round was accepted. `prior` pseudo-drafts
    accepted at `prior_rate` stand in before there is evidence.
    """

    prior_rate: float = 0.5
    prior: float = 2.0
    reached: float = 0.0
    accepted: float = 0.0

    @property
    def rate(self) -> float:
        """Accepted over reached drafts so far, with the prior."""
        return (self.accepted + self.prior * self.prior_rate) / (self.reached + self.prior)

    def update(self, verified: int, accepted: int) -> None:
        """Record a round that verified `verified` of this source's drafts and accepted the first `accepted`."""
        if verified:
            self.reached += min(verified, accepted + 1)
            self.accepted += accepted


def tokens_per_cost(acceptances: Sequence[float], curve: Mapping[int, float] | None) -> float:
    """Expected new tokens per unit of verification cost of the best number of leading drafts, draft i
    accepted with probability `acceptances[i]` once every draft before it was: what a draft source is worth now.

    Without a cost curve every pass costs the same and every draft is worth verifying.
    """
    keep = len(acceptances) if curve is None else best_draft_length(acceptances, curve)
    expected, survival = 1.0, 1.0
    for acceptance in acceptances[:keep]:
        survival *= acceptance
        expected += survival
    return expected if curve is None else expected / curve_at(curve, keep + 1)
