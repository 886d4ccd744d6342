"""The speculative-decoding cost model: expected tokens per step and expected speedup from α, γ, c."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from ..adapter.model import KangarooAdapter
from ..core.cache import truncate_cache
from ..core.draft_length import ContextCostCurve
from ..decoding.self_draft import SelfDraft
from .timing import interleaved_samples_ms


def _check_alpha(alpha: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"acceptance rate alpha must be in [0, 1], got {alpha!r}")


def expected_tokens_per_step(alpha: float, gamma: float) -> float:
    """Expected new tokens per target pass with γ drafts each accepted with probability α."""
    _check_alpha(alpha)
    if alpha == 1:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def expected_speedup(alpha: float, gamma: float, cost_ratio: float, verify_cost: float = 1.0) -> float:
    """Expected speedup: tokens per round over the round's cost in target passes over one token.

    With `verify_cost` = 1 (a pass over γ + 1 tokens costs what a pass over one does, nearly true on
    a GPU) this is Leviathan et al.'s (1 − α^(γ+1)) / ((1 − α)(γc + 1)); on a CPU the verification
    pass costs more, and `verify_cost` = cost(γ + 1 tokens) / cost(1 token) from `cost_curve`.
    """
    if cost_ratio < 0:
        raise ValueError(f"cost ratio c must be >= 0, got {cost_ratio!r}")
    if verify_cost <= 0:
        raise ValueError(f"verify_cost must be > 0, got {verify_cost!r}")
    return expected_tokens_per_step(alpha, gamma) / (gamma * cost_ratio + verify_cost)


@torch.inference_mode()
def pass_times(target: PreTrainedModel, prompt_ids: torch.Tensor, sizes: Sequence[int],
               repeats: int = 15) -> dict[int, Spread]:
    """The target's time in ms of one cached pass over n new tokens after `prompt_ids`, per n: median and quartiles
    (the sizes timed in turn within each repeat)."""
    samples = interleaved_samples_ms(_target_passes(target, prompt_ids, sizes), repeats)
    return {n: Spread.of(samples[n]) for n in sizes}


@torch.inference_mode()
def cost_curve(target: PreTrainedModel, prompt_ids: torch.Tensor, sizes: list[int] | None = None,
               repeats: int = 15) -> dict[int, float]:
    """v(n), the target's cost of one cached pass over n new tokens relative to a pass over one: {n: median ratio}.

    Measured as `round_costs` measures it (the pass sizes timed in turn within each repeat), without a draft step.
    """
    sizes = sorted(set(sizes or [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16]) | {1})
    times = pass_times(target, prompt_ids, sizes, repeats)
    return {n: times[n].median / times[1].median for n in sizes}


def context_cost_curve(target: PreTrainedModel, prompts: Sequence[torch.Tensor], sizes: list[int] | None = None,
                       repeats: int = 15) -> ContextCostCurve:
    """Cost curves measured after the shortest and the longest of `prompts` (1, n): what a round reads per context."""
    lengths = {int(p.shape[1]): p for p in prompts}
    ends = {length: lengths[length] for length in (min(lengths), max(lengths))}
    return ContextCostCurve({length: cost_curve(target, ids, sizes, repeats) for length, ids in ends.items()})


def relative_cost(curve: dict[int, float], tokens: float) -> float:
    """The cost curve read at `tokens` (linear between measured sizes, flat beyond the last)."""
    sizes = sorted(curve)
    if tokens <= sizes[0]:
        return curve[sizes[0]]
    for low, high in zip(sizes, sizes[1:], strict=False):
        if tokens <= high:
            return curve[low] + (curve[high] - curve[low]) * (tokens - low) / (high - low)
    return curve[sizes[-1]]


@dataclass(frozen=True)
class Spread:
    """A timing over repeats: its median and interquartile range."""

    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile

    @classmethod
    def of(cls, samples: Sequence[float], scale: float = 1.0) -> Spread:
        """The median and quartiles of `samples`, each divided by `scale`."""
        q1, q2, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
        return cls(q2 / scale, q1 / scale, q3 / scale)


@dataclass(frozen=True)
class RoundCosts:
    """What a speculative round costs, measured after one prompt, in target passes over one token.

    `draft` is c, one draft step relative to one target pass (for Kangaroo the whole step: the
    shallow layers, the adapter and the draft head); `curve[n]` is v(n), one target pass over n new
    tokens (a verification of n − 1 drafts) relative to one pass over one token. Each is a `Spread`
    over repeats, all divided by the median one-token pass (`target_ms`).
    """

    target_ms: Spread
    draft: Spread
    curve: dict[int, Spread]

    @property
    def c(self) -> float:
        """The cost ratio c: the median draft step over the median target pass."""
        return self.draft.median

    def verify_cost(self, tokens: float) -> float:
        """v(n): the median cost of a target pass over `tokens` tokens (linear between measured sizes)."""
        return relative_cost({n: s.median for n, s in self.curve.items()}, tokens)

    def expected_speedup(self, alpha: float, gamma: float) -> float:
        """The cost model's estimate: (1 − α^(γ+1)) / ((1 − α)(γc + v(γ + 1))), from α and these costs."""
        return expected_speedup(alpha, gamma, self.c, self.verify_cost(gamma + 1))


@torch.inference_mode()
def round_costs(target: PreTrainedModel, drafter: PreTrainedModel | KangarooAdapter, prompt_ids: torch.Tensor,
                sizes: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8), repeats: int = 21,
                progress: Callable[[], None] | None = None) -> RoundCosts:
    """Measure c and the verification curve v(n) after `prompt_ids`, each over `repeats` timed runs.

    `drafter` is a draft model (one cached forward step over one token) or a Kangaroo adapter (one
    self-draft step: the newest token through the shallow layers, the adapter, the draft head).
    Every repeat times each pass size and the draft step once, in rotating order, so that a change
    of load on a shared machine shifts all of them alike instead of one size's block. `progress` is
    called after each repeat (a progress bar's `update`).
    """
    sizes = sorted(set(sizes) | {1})
    timed: dict[int | str, Timed] = {**_target_passes(target, prompt_ids, sizes),
                                     "draft": _draft_step(drafter, target, prompt_ids)}
    samples = interleaved_samples_ms(timed, repeats, progress=progress)
    one = statistics.median(samples[1])
    return RoundCosts(target_ms=Spread.of(samples[1]), draft=Spread.of(samples["draft"], one),
                      curve={n: Spread.of(samples[n], one) for n in sizes})


Timed = tuple[Callable[[], object], Callable[[], None]]
"""A step to time and the rollback that undoes it."""


def _target_passes(target: PreTrainedModel, prompt_ids: torch.Tensor, sizes: Sequence[int]) -> dict[int, Timed]:
    """For each n, one cached target pass over n new tokens after `prompt_ids`, rolled back to the prompt."""
    cache = DynamicCache(config=target.config)
    target(input_ids=prompt_ids, cache=cache, use_cache=True)
    length = cache.get_seq_length()
    fresh = torch.randint(0, target.config.vocab_size, (1, max(sizes)), generator=torch.Generator().manual_seed(0))
    fresh = fresh.to(prompt_ids.device)
    return {n: (lambda n=n: target(input_ids=fresh[:, :n], cache=cache, use_cache=True),
                lambda: truncate_cache(cache, length)) for n in sizes}


def _draft_step(drafter: PreTrainedModel | KangarooAdapter, target: PreTrainedModel,
                prompt_ids: torch.Tensor) -> Timed:
    """One draft step after the cached prompt, and the rollback that undoes it."""
    n = prompt_ids.shape[1]
    if isinstance(drafter, KangarooAdapter):
        model = SelfDraft(target, drafter)
        model.defer(model.shallow(prompt_ids[:, :-1], 0)[0])  # the prompt, read by the adapter with the first step
        model.draft(*model.shallow(prompt_ids[:, -1:], n - 1), n - 1)
        model.rollback(n - 1)
        return (lambda: model.draft(*model.shallow(prompt_ids[:, -1:], n - 1), n - 1)), lambda: model.rollback(n - 1)
    cache = DynamicCache(config=drafter.config)
    drafter(input_ids=prompt_ids[:, :-1], cache=cache, use_cache=True)
    return (lambda: drafter(input_ids=prompt_ids[:, -1:], cache=cache, use_cache=True, logits_to_keep=1),
            lambda: truncate_cache(cache, n - 1))
