"""Drafting for a batch in lockstep: each row proposes, and stops, on its own.

Every draft step gives the next-token logits of all rows at once; `RowDrafts` picks each
drafting row's token (argmax, or a sample with the row's generator), keeps its confidence and
distribution, and stops the row after EOS, below the confidence threshold, or at its budget.
A row that has stopped repeats its last token, which nothing verifies; drafting ends when no
row drafts. A row may be given tokens to draft first (`force`: copies from its context, each a
point-mass draft that nothing samples and no threshold stops); it then drafts on as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.result import Step
from ..core.sampling import probs_of, verify_drafts, warp
from .copy_drafts import COPY, point_mass

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
        self.forced: list[list[int]] = [[] for _ in self.budgets]  # per row: tokens drafted first (`force`)
        self.forced_confidences: list[list[float]] = [[] for _ in self.budgets]
        self.tokens = torch.zeros(len(self.budgets), 0, dtype=torch.long)

    def force(self, row: int, tokens: Sequence[int], confidences: Sequence[float], budget: int) -> None:
        """Make `tokens` the first drafts of `row` (point-mass drafts with these acceptance estimates as their
        `confidences`), then let it draft up to `budget` tokens of its own; before the row's first `add`."""
        if self.confidences[row]:
            raise ValueError(f"row {row} has drafted already: forced tokens go first")
        self.forced[row], self.forced_confidences[row] = list(tokens), list(confidences)
        self.budgets[row] = budget
        self.drafting[row] = bool(tokens) or budget > 0
        self.stopped[row] = None

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
            made, forced = len(self.confidences[i]), self.forced[i]
            if made < len(forced):  # a forced token: nothing sampled, no threshold
                chosen[i] = forced[made]
                self.confidences[i].append(self.forced_confidences[i][made])
                if made + 1 == len(forced) and not self.budgets[i]:
                    self._stop(i, COPY)
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
            elif len(self.confidences[i]) - len(forced) == self.budgets[i]:
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

    def forced_count(self, row: int, count: int) -> int:
        """How many of a row's first `count` drafts were forced."""
        return min(count, len(self.forced[row]))

    def probs_of_row(self, row: int, count: int, target_logits: torch.Tensor) -> torch.Tensor | None:
        """The draft distributions of a row's first `count` drafts (count, V, beside `target_logits`): point masses
        on forced tokens, then the distributions its own drafts were sampled from; None when greedy."""
        if self.temperature == 0 or not count:
            return None
        forced = self.forced_count(row, count)
        parts = [point_mass(self.forced[row][:forced], target_logits.shape[-1], target_logits.device)] if forced else []
        parts += [torch.stack(self.probs[row][: count - forced])] if count > forced else []
        return torch.cat(parts)

    def verify(self, row: int, count: int, target_logits: torch.Tensor, generator: torch.Generator) -> Step:
        """Verify a row's first `count` drafts against the target's logits (count + 1, V): its round as a `Step`."""
        drafted = self.tokens[row, :count].tolist()
        draft_probs = self.probs_of_row(row, count, target_logits)
        accepted, own = verify_drafts(target_logits, draft_probs, drafted, self.temperature, self.top_p, generator)
        step = Step(emitted=drafted[:accepted] + [own], drafted=drafted, accepted=accepted)
        if count:
            forced = self.forced_count(row, count)
            own_logits = self.logits[row][: count - forced]
            step.draft_probs = [1.0] * forced + (probs_of(torch.stack(own_logits), drafted[forced:], self.temperature,
                                                          self.top_p) if own_logits else [])
            step.target_probs = probs_of(target_logits[:-1], drafted, self.temperature, self.top_p)
        return step
