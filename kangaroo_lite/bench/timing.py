"""Timing: steps timed in turn within each repeat, so that a shared machine's load shifts them alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def interleaved_samples_ms(timed: dict[K, tuple[Callable[[], object], Callable[[], None]]], repeats: int = 15,
                           warmup: int = 1, progress: Callable[[], None] | None = None) -> dict[K, list[float]]:
    """Milliseconds of each `(step, rollback)` per repeat, every repeat running them all in rotating order.

    On a shared machine a change of load then shifts every step's samples alike, so their ratios hold.
    `warmup` rounds over all steps come first and are not timed; `progress` is called after each timed repeat.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    keys = list(timed)
    samples: dict[K, list[float]] = {key: [] for key in keys}
    for r in range(warmup + repeats):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            step, rollback = timed[key]
            start = time.perf_counter()
            step()
            elapsed = 1000 * (time.perf_counter() - start)
            rollback()
            if r >= warmup:
                samples[key].append(elapsed)
        if progress is not None and r >= warmup:
            progress()
    return samples
