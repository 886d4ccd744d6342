"""Copy drafts as a draft source: one row's context index, the acceptance its copies have had, and
the choice between copying and the rival source (the adapter, or none).

A copied token is a deterministic draft: its draft distribution is a point mass, so the rejection
rule accepts it with probability p(x) and on rejection samples from p with x removed and
renormalised (`point_mass`; `core.sampling.accept_drafts` does the rest). Whether to copy is
decided from what is known before anything is sampled this round (the copies' acceptance so far,
the rival's first-draft confidence, the cost curve), so the choice never biases a sampled draft.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..core.checks import check_positive
from ..core.context_index import ContextIndex
from ..core.draft_length import AcceptanceRate, best_draft_length, tokens_per_cost

COPY = "copy"  # a round's `draft_stop` when its drafts were copied and nothing drafted after them


def point_mass(tokens: Sequence[int], vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The draft distributions of copied tokens (k, V): all mass on the copied token."""
    return torch.nn.functional.one_hot(torch.tensor(list(tokens), device=device, dtype=torch.long),
                                       vocab_size).float()


class CopyDrafts:
    """One sequence's copy drafts: proposals from its `ContextIndex`, valued with their acceptance so far."""

    def __init__(self, prompt: Sequence[int], max_copy_tokens: int = 8, min_match: int = 2, max_match: int = 4):
        check_positive("max_copy_tokens", max_copy_tokens)
        self.index = ContextIndex(prompt, min_match, max(max_match, min_match))
        self.acceptance = AcceptanceRate()
        self.max_copy_tokens = max_copy_tokens

    def propose(self, budget: int, curve: Mapping[int, float] | None, rival: float) -> list[int]:
        """The copied tokens worth verifying this round (at most `budget`): none when nothing matches or
        when the rival source is worth at least as many tokens per unit of cost (`rival`)."""
        proposal = self.index.propose(min(self.max_copy_tokens, budget))
        rate = self.acceptance.rate
        if not proposal or tokens_per_cost(rate, len(proposal), curve) <= rival:
            return []
        return proposal if curve is None else proposal[: best_draft_length([rate] * len(proposal), curve)]

    def confidences(self, count: int) -> list[float]:
        """The acceptance estimate of each of `count` copied drafts."""
        return [self.acceptance.rate] * count

    def record(self, copied: int, accepted: int, kept: Sequence[int]) -> None:
        """After a round: `copied` copies were verified, its first `accepted` drafts accepted, `kept` appended."""
        self.acceptance.update(copied, min(accepted, copied))
        self.index.extend(kept)


def rival_value(confidence: float | None, drafts: int, curve: Mapping[int, float] | None) -> float:
    """What the rival source is worth (tokens per unit of cost): `drafts` drafts at its first draft's
    `confidence`, or one token per pass where it has no draft."""
    if confidence is None or drafts <= 0:
        return tokens_per_cost(0.0, 0, curve)
    return tokens_per_cost(confidence, drafts, curve)
