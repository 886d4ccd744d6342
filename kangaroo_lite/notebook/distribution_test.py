"""Is a sample drawn from a known distribution? Total variation against the chance of as many exact samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total-variation distance ½ Σ |p − q| between two probability vectors."""
    if p.shape != q.shape:
        raise ValueError(f"distributions of different shapes: {tuple(p.shape)} and {tuple(q.shape)}")
    return 0.5 * float((p.float() - q.float()).abs().sum())


def frequencies(samples: Sequence[int], size: int) -> torch.Tensor:
    """The empirical distribution of `samples` (ids in [0, size))."""
    if not samples:
        raise ValueError("no samples")
    return torch.bincount(torch.tensor(list(samples)), minlength=size).float() / len(samples)


@dataclass(frozen=True)
class ChanceTest:
    """The sample's distance from the exact distribution, and the distances exact samples show by chance."""

    tv: float  # total variation between the sample's frequencies and the exact distribution
    chance_median: float  # median TV of `trials` exact samples of the same size
    chance_high: float  # their 99th percentile
    p_value: float  # share of exact samples at least as far away (with the sample itself counted)
    samples: int
    trials: int


def chance_test(exact: torch.Tensor, samples: Sequence[int], trials: int = 2000, seed: int = 0) -> ChanceTest:
    """A Monte Carlo test of "`samples` were drawn from `exact`", with total variation as the statistic.

    Draws `trials` samples of the same size from `exact` (seeded: the answer is deterministic) and
    reports where the observed TV falls among theirs. A small p-value means the sample is further
    from `exact` than exact sampling plausibly puts it.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    exact = exact.float().cpu()
    tv = _tv_from_sample(exact, torch.tensor(list(samples)))
    generator = torch.Generator().manual_seed(seed)
    draws = torch.multinomial(exact, len(samples) * trials, replacement=True, generator=generator).view(trials, -1)
    chance = torch.tensor([_tv_from_sample(exact, row) for row in draws])
    p_value = (1 + int((chance >= tv - 1e-12).sum())) / (1 + trials)
    return ChanceTest(tv=tv, chance_median=float(chance.median()), chance_high=float(chance.quantile(0.99)),
                      p_value=p_value, samples=len(samples), trials=trials)


def _tv_from_sample(exact: torch.Tensor, sample: torch.Tensor) -> float:
    """TV between a sample's frequencies and `exact`, summing only over the ids seen (unseen ids add their p)."""
    ids, counts = sample.unique(return_counts=True)
    p = exact[ids]
    return 0.5 * float((counts / len(sample) - p).abs().sum() + (1 - p.sum()).clamp_min(0))
