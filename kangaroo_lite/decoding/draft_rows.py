"""Drafting for a batch in lockstep: each row proposes, and stops, on its own.

Every draft step gives the next-token logits of all rows at once; `RowDrafts` picks each
drafting row's token (argmax, or a sample with the row's generator), keeps its confidence and
distribution, and stops the row after EOS, below the confidence threshold, or at its budget.
A row that has stopped repeats its last token, which nothing verifies; drafting ends when no
row drafts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.result import Step
from ..core.sampling import probs_of, verify_drafts, warp

THRESHOLD, MAX_DRAFT_TOKENS, BUDGET, EOS, COST = "threshold", "max_draft_tokens", "budget", "eos", "cost"
BACKOFF = "backoff"  # no drafting this round: recent drafts were not worth verifying (`DraftBackoff`)


class RowDrafts:
    """The drafts of one round for every row of a batch."""

    def __init__(self, budgets: Sequence[int], max_draft_tokens: int, threshold: float, temperature: float,
                 top_p: float, generators: Sequence[torch.Generator], eos: int | None,
                 threshold_on_logits: bool = False):
        """`budgets`: drafts each row may propose this round. The confidence compared with `threshold` is
        the top-1 probability of the distribution a row samples from, or of the softmax of its logits
        with `threshold_on_logits` (as Hugging Face's assistant, and our draft-model proposer, do)."""
        self.budgets, self.max_draft_tokens, self.threshold = list(budgets), max_draft_tokens, threshold
        self.temperature, self.top_p, self.generators, self.eos = temperature, top_p, generators, eos
        self.threshold_on_logits = threshold_on_logits
        self.drafting = [budget > 0 for budget in self.budgets]
        self.stopped: list[str | None] = [None] * len(self.budgets)
        self.confidences: list[list[float]] = [[] for _ in self.budgets]
        self.logits: list[list[torch.Tensor]] = [[] for _ in self.budgets]
        self.probs: list[list[torch.Tensor]] = [[] for _ in self.budgets]
        self.tokens = torch.zeros(len(self.budgets), 0, dtype=torch.long)

    def any_drafting(self) -> bool:
        """True while some row still drafts."""
        return any(self.drafting)

    def add(self, logits: torch.Tensor) -> torch.Tensor:
        """Take one draft step's logits (B, V); returns every row's token (B, 1), the next step's input."""
        greedy = self.temperature == 0
        top_probs, top_tokens = torch.softmax(logits.float(), -1).max(-1)
        top_probs, top_tokens = top_probs.tolist(), top_tokens.tolist()  # one transfer for the whole batch
        chosen = self.tokens[:, -1].clone() if self.tokens.shape[1] else torch.tensor(top_tokens)
        for i, drafting in enumerate(self.drafting):
            if not drafting:
                continue
            if greedy:
                token, confidence = top_tokens[i], top_probs[i]
            else:
                q = warp(logits[i], self.temperature, self.top_p)
                token = int(torch.multinomial(q, 1, generator=self.generators[i]))
                confidence = float(q.max())
                self.probs[i].append(q)
            chosen[i] = token
            self.confidences[i].append(confidence)
            self.logits[i].append(logits[i])
            stop_confidence = top_probs[i] if self.threshold_on_logits else confidence
            if token == self.eos:
                self._stop(i, EOS)
            elif stop_confidence < self.threshold:
                self._stop(i, THRESHOLD)
            elif len(self.confidences[i]) == self.budgets[i]:
                self._stop(i, MAX_DRAFT_TOKENS if self.budgets[i] == self.max_draft_tokens else BUDGET)
        self.tokens = torch.cat([self.tokens, chosen.unsqueeze(1)], 1)
        return chosen.unsqueeze(1).to(logits.device)

    def _stop(self, row: int, reason: str) -> None:
        self.drafting[row], self.stopped[row] = False, reason

    def counts(self) -> list[int]:
        """How many tokens each row drafted."""
        return [len(confidences) for confidences in self.confidences]

    def stops(self) -> list[str]:
        """Why each row stopped drafting (`BUDGET` for a row that had no budget at all)."""
        return [reason or BUDGET for reason in self.stopped]

    def probs_of_row(self, row: int, count: int) -> torch.Tensor | None:
        """The distributions a row's first `count` drafts were sampled from (count, V); None when greedy."""
        return torch.stack(self.probs[row][:count]) if self.temperature > 0 and count else None

    def logits_of_row(self, row: int, count: int) -> torch.Tensor:
        """The draft logits of a row's first `count` drafts (count, V)."""
        return torch.stack(self.logits[row][:count])

    def verify(self, row: int, count: int, target_logits: torch.Tensor, generator: torch.Generator) -> Step:
        """Verify a row's first `count` drafts against the target's logits (count + 1, V): its round as a `Step`."""
        drafted = self.tokens[row, :count].tolist()
        accepted, own = verify_drafts(target_logits, self.probs_of_row(row, count), drafted, self.temperature,
                                      self.top_p, generator)
        step = Step(emitted=drafted[:accepted] + [own], drafted=drafted, accepted=accepted)
        if count:
            step.draft_probs = probs_of(self.logits_of_row(row, count), drafted, self.temperature, self.top_p)
            step.target_probs = probs_of(target_logits[:-1], drafted, self.temperature, self.top_p)
        return step
