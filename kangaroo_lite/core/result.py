"""The result object every decoding method returns, with its per-step trace."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

ACCEPTED, CORRECTION, BONUS, TARGET = "accepted", "correction", "bonus", "target"


@dataclass
class Step:
    """One target forward pass: what was drafted, what was kept, what was emitted."""

    emitted: list[int]
    drafted: list[int] = field(default_factory=list)
    accepted: int = 0
    draft_probs: list[float] = field(default_factory=list)
    target_probs: list[float] = field(default_factory=list)
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def fates(self) -> list[str]:
        """The fate of each emitted token: accepted draft, target correction, bonus or target."""
        if not self.drafted:
            own = TARGET
        elif self.accepted < len(self.drafted):
            own = CORRECTION
        else:
            own = BONUS
        return [ACCEPTED if i < self.accepted else own for i in range(len(self.emitted))]


@dataclass
class DecodingResult:
    """Generated tokens plus the trace and the counters a benchmark needs."""

    method: str
    prompt_tokens: list[int]
    tokens: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    target_forwards: int = 0
    wall_time: float = 0.0
    text: str = ""
    stop_reason: str = ""

    @property
    def mean_accepted(self) -> float:
        """New tokens per target forward pass (Spec-Bench's #MAT; 1.0 for autoregressive)."""
        return len(self.tokens) / self.target_forwards if self.target_forwards else 0.0

    @property
    def tokens_per_second(self) -> float:
        """New tokens divided by wall time."""
        return len(self.tokens) / self.wall_time if self.wall_time > 0 else 0.0

    def fates(self) -> list[str]:
        """The fate of every generated token, in order."""
        return [fate for step in self.steps for fate in step.fates()]

    def acceptance_by_position(self) -> list[float]:
        """Share of steps that accepted draft position i, among steps that drafted it."""
        return acceptance_by_position(self.steps)

    def acceptance_rate(self) -> float:
        """Accepted drafts over drafted tokens, across all steps (α)."""
        return acceptance_rate(self.steps)

    def to_dict(self) -> dict:
        """A JSON-ready dict with the derived figures included."""
        data = asdict(self)
        data.update(mean_accepted=self.mean_accepted, tokens_per_second=self.tokens_per_second,
                    acceptance_by_position=self.acceptance_by_position())
        return data


def acceptance_by_position(steps: list[Step]) -> list[float]:
    """Share of steps that accepted draft position i, among the steps that drafted it."""
    longest = max((len(s.drafted) for s in steps), default=0)
    rates = []
    for i in range(longest):
        drafted = [s for s in steps if len(s.drafted) > i]
        rates.append(sum(s.accepted > i for s in drafted) / len(drafted))
    return rates


def acceptance_rate(steps: list[Step]) -> float:
    """Accepted drafts over drafted tokens (α), pooled over steps."""
    drafted = sum(len(s.drafted) for s in steps)
    return sum(s.accepted for s in steps) / drafted if drafted else 0.0


class Recorder:
    """Collects emitted tokens into a `DecodingResult`, stopping at EOS or the token budget."""

    def __init__(self, method: str, prompt_tokens: list[int], max_new_tokens: int, eos_token_id: int | None):
        self.result = DecodingResult(method=method, prompt_tokens=prompt_tokens)
        self.max_new_tokens = max_new_tokens
        self.eos_token_id = eos_token_id
        self._start = time.perf_counter()
        self._last = self._start

    @property
    def done(self) -> bool:
        """True once EOS was emitted or the budget is spent."""
        return bool(self.result.stop_reason)

    @property
    def remaining(self) -> int:
        """How many more tokens may be emitted."""
        return self.max_new_tokens - len(self.result.tokens)

    def record(self, step: Step) -> list[int]:
        """Append a step's tokens (cut at EOS and at the budget); returns the tokens kept."""
        kept = step.emitted[: self.remaining]
        if self.eos_token_id is not None and self.eos_token_id in kept:
            kept = kept[: kept.index(self.eos_token_id) + 1]
            self.result.stop_reason = "eos"
        step.emitted = kept
        step.accepted = min(step.accepted, len(kept))
        now = time.perf_counter()
        step.seconds, self._last = now - self._last, now
        self.result.steps.append(step)
        self.result.tokens.extend(kept)
        self.result.target_forwards += 1
        if not self.result.stop_reason and self.remaining <= 0:
            self.result.stop_reason = "length"
        return kept

    def finish(self, tokenizer=None) -> DecodingResult:
        """Stop the clock and decode the text when a tokenizer is given."""
        self.result.wall_time = time.perf_counter() - self._start
        if tokenizer is not None:
            self.result.text = tokenizer.decode(self.result.tokens, skip_special_tokens=True)
        return self.result


def judged_acceptance_rate(steps: list[Step]) -> float:
    """α as the cost model means it: the chance a draft is accepted once every draft before it was.

    A draft is *judged* if all drafts before it in its round were accepted: every accepted draft and
    the first rejected one (those after it are discarded unjudged). α = accepted / judged.
    """
    accepted = sum(s.accepted for s in steps)
    judged = accepted + sum(s.accepted < len(s.drafted) for s in steps)
    return accepted / judged if judged else 0.0
