"""Copy drafts as a draft source: one row's context index, the acceptance its copies have had, and
the choice between copying and the rival source (the adapter, or none).

A copied token is a deterministic draft: its draft distribution is a point mass, so the rejection
rule accepts it with probability p(x) and on rejection samples from p with x removed and
renormalised (`point_mass`; `core.sampling.accept_drafts` does the rest). Whether to copy is
decided from what is known before anything is sampled this round (the copies' acceptance so far,
the rival's first-draft confidence, the cost curve), so the choice never biases a sampled draft.

How often a copy is right depends on how long a suffix matched, on whether the rival drafter's
top choice is the same token, and a copy that started right tends to stay right. On
SmolLM2-135M-Instruct's greedy replies (64 tokens) to 30 Spec-Bench questions the benchmark does not
ask, the first copied token was the target's after a 1-token match 20% of the time where the adapter's
top token differed and 55% where it agreed; after 2 tokens 46% / 83%, after 3 60% / 71%, after 4–7
84% / 88%, after 8–15 88% / 93%, after 16 or more 93% / 94%; each later one, once the ones before it
were right, 77% after a 1-token match, rising to 96% after 16. Those are the priors
(`ACCEPTANCE_PRIORS`); each generation then learns its own rates per match length and agreement.
A copy worth more than the adapter could be even if its draft were right as often as its calibration
allows is taken without asking the adapter (its first step costs about 8% of a SmolLM2 pass here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..core.checks import check_positive
from ..core.context_index import ContextIndex
from ..core.draft_length import AcceptanceRate, best_draft_length, tokens_per_cost

COPY = "copy"  # a round's `draft_stop` when its drafts were copied and nothing drafted after them
MATCH_BUCKETS = (1, 2, 3, 4, 8, 16)
"""Match lengths whose copies are valued apart: a length counts as the largest bucket not above it."""
ACCEPTANCE_PRIORS = {
    (1, None): (0.2, 0.75), (1, True): (0.6, 0.75), (1, False): (0.2, 0.75),
    (2, None): (0.5, 0.8), (2, True): (0.8, 0.8), (2, False): (0.45, 0.8),
    (3, None): (0.6, 0.85), (3, True): (0.75, 0.85), (3, False): (0.6, 0.85),
    (4, None): (0.85, 0.9), (4, True): (0.9, 0.9), (4, False): (0.85, 0.9),
    (8, None): (0.9, 0.9), (8, True): (0.95, 0.9), (8, False): (0.9, 0.9),
    (16, None): (0.95, 0.95), (16, True): (0.95, 0.95), (16, False): (0.95, 0.95),
}
"""(match bucket, whether the rival's top token is the copy's first: None when it has none) → prior
acceptance of (the first copied token, each later one)."""


def match_bucket(length: int) -> int:
    """The bucket of `MATCH_BUCKETS` a suffix match of `length` tokens counts in."""
    return max(bucket for bucket in MATCH_BUCKETS if bucket <= length)


def point_mass(tokens: Sequence[int], vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The draft distributions of copied tokens (k, V): all mass on the copied token."""
    return torch.nn.functional.one_hot(torch.tensor(list(tokens), device=device, dtype=torch.long),
                                       vocab_size).float()


class CopyDrafts:
    """One sequence's copy drafts: proposals from its `ContextIndex`, valued with their acceptance so far."""

    def __init__(self, prompt: Sequence[int], max_copy_tokens: int = 8, min_match: int = 1,
                 max_match: int = MATCH_BUCKETS[-1]):
        check_positive("max_copy_tokens", max_copy_tokens)
        self.index = ContextIndex(prompt, min_match, max(max_match, min_match))
        self.max_copy_tokens = max_copy_tokens
        # (match length, agreement) → the acceptance of (the first copied token, each later one)
        self.rates: dict[tuple[int, bool | None], tuple[AcceptanceRate, AcceptanceRate]] = {}
        self.kind: tuple[int, bool | None] = (0, None)  # of the last proposal
        self.estimates: list[float] = []  # its tokens' acceptance estimates
        self.cut = False  # whether it was cut short of what the context offered: drafting on would not pay

    def _rates(self, kind: tuple[int, bool | None]) -> tuple[AcceptanceRate, AcceptanceRate]:
        if kind not in self.rates:
            first, later = ACCEPTANCE_PRIORS[kind]
            self.rates[kind] = AcceptanceRate(prior_rate=first), AcceptanceRate(prior_rate=later)
        return self.rates[kind]

    def on_offer(self) -> bool:
        """Whether the context offers a copy now (a suffix matched): cheap, before valuing the rival."""
        return self.index.match()[0] > 0

    def propose(self, budget: int, curve: Mapping[int, float] | None, rival: float,
                rival_choice: int | None = None) -> list[int]:
        """The copied tokens worth verifying this round (at most `budget`): none when nothing matches or
        when the rival source is worth at least as many tokens per unit of cost (`rival`). `rival_choice`:
        the rival drafter's most probable next token (None when it has not drafted), which the copy's
        first token agrees with or not."""
        length, start = self.index.match()
        proposal = self.index.tokens[start: start + min(self.max_copy_tokens, budget)] if length else []
        if not proposal:
            return []
        self.kind = match_bucket(length), None if rival_choice is None else rival_choice == proposal[0]
        first, later = self._rates(self.kind)
        estimates = [first.rate] + [later.rate] * (len(proposal) - 1)
        if tokens_per_cost(estimates, curve) <= rival:
            return []
        keep = len(proposal) if curve is None else best_draft_length(estimates, curve)
        self.estimates, self.cut = estimates[:keep], keep < len(proposal)
        return proposal[:keep]

    def confidences(self, count: int) -> list[float]:
        """The acceptance estimates of the first `count` tokens of the last proposal."""
        return self.estimates[:count]

    def record(self, copied: int, accepted: int, kept: Sequence[int]) -> None:
        """After a round: `copied` copies were verified, its first `accepted` drafts accepted, `kept` appended."""
        if copied:
            first, later = self._rates(self.kind)
            first.update(1, min(accepted, 1))
            if accepted:  # the later copies were reached only if the first was accepted
                later.update(copied - 1, min(accepted, copied) - 1)
        self.index.extend(kept)


def rival_value(confidence: float | None, drafts: int, curve: Mapping[int, float] | None) -> float:
    """What the rival source is worth (tokens per unit of cost): `drafts` drafts at its first draft's
    `confidence`, or one token per pass where it has no draft."""
    if confidence is None or drafts <= 0:
        return tokens_per_cost([], curve)
    return tokens_per_cost([confidence] * drafts, curve)
