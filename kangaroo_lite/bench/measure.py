"""Honest speed measurement: warm-up, interleaved runs, medians of repeats, same token counting."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.result import DecodingResult

Run = Callable[[torch.Tensor], DecodingResult]


@dataclass
class PromptTiming:
    """All repeats of one method on one prompt."""

    tokens: int
    wall_times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    runs: list[DecodingResult] = field(default_factory=list)

    @property
    def median_time(self) -> float:
        """Median wall time of the repeats."""
        return statistics.median(self.wall_times)

    @property
    def result(self) -> DecodingResult:
        """The repeat of median wall time (the lower one of an even count): its tokens are every repeat's."""
        return sorted(self.runs, key=lambda run: run.wall_time)[(len(self.runs) - 1) // 2]


@dataclass
class MethodTiming:
    """One method over a list of prompts."""

    prompts: list[PromptTiming] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Σ new tokens / Σ median wall time, as Spec-Bench aggregates."""
        return sum(p.tokens for p in self.prompts) / sum(p.median_time for p in self.prompts)

    @property
    def mean_accepted(self) -> float:
        """Σ new tokens / Σ target forward passes over the prompts."""
        forwards = sum(p.result.target_forwards for p in self.prompts)
        return sum(p.tokens for p in self.prompts) / forwards

    @property
    def cpu_seconds_per_token(self) -> float:
        """Process CPU time per new token (median over repeats): an energy proxy on a CPU."""
        cpu = sum(statistics.median(p.cpu_times) for p in self.prompts)
        return cpu / sum(p.tokens for p in self.prompts)

    def subset(self, indices: list[int]) -> MethodTiming:
        """The same method restricted to some prompts (e.g. one subtask)."""
        return MethodTiming([self.prompts[i] for i in indices])

    def spread(self) -> tuple[float, float]:
        """(min, max) over repeats of the whole-set tokens/s, to show the run-to-run spread."""
        repeats = min(len(p.wall_times) for p in self.prompts)
        rates = [sum(p.tokens for p in self.prompts) / sum(p.wall_times[r] for p in self.prompts)
                 for r in range(repeats)]
        return min(rates), max(rates)


def interleaved(runs: dict[str, Run], prompts: list[torch.Tensor], repeats: int = 3, warmup: int = 1,
                progress: Callable[[], None] | None = None) -> dict[str, MethodTiming]:
    """Time every method on every prompt, interleaving methods (A B C, B C A, …) within each repeat.

    Tokens are counted the same way for every method: the length of the returned `tokens`.
    Each method's output must be identical across repeats (a decoding bug otherwise).
    `progress` is called after each prompt.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name](prompts[0])
    timings = {name: MethodTiming() for name in names}
    for index, prompt in enumerate(prompts):
        for repeat in range(repeats):
            shift = (index + repeat) % len(names)
            for name in names[shift:] + names[:shift]:
                cpu = time.process_time()
                result = runs[name](prompt)
                cpu = time.process_time() - cpu
                timing = timings[name]
                if repeat == 0:
                    timing.prompts.append(PromptTiming(tokens=len(result.tokens)))
                elif result.tokens != timing.prompts[-1].runs[0].tokens:
                    raise RuntimeError(f"{name} gave different tokens on a repeat of the same prompt")
                timing.prompts[-1].wall_times.append(result.wall_time)
                timing.prompts[-1].cpu_times.append(cpu)
                timing.prompts[-1].runs.append(result)
        if progress:
            progress()
    return timings


def speedups(timings: dict[str, MethodTiming], baseline: str) -> dict[str, float]:
    """tokens/s of each method divided by the baseline's, from the same run."""
    base = timings[baseline].tokens_per_second
    return {name: t.tokens_per_second / base for name, t in timings.items()}
