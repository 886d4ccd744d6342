"""Timing helpers: median latency of one forward pass over n new tokens after a cached prompt."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from transformers import DynamicCache, PreTrainedModel

from ..core.cache import truncate_cache

K = TypeVar("K", bound=Hashable)


@torch.inference_mode()
def forward_latency_ms(model: PreTrainedModel, prompt_ids: torch.Tensor, sizes: list[int],
                       repeats: int = 15) -> dict[int, float]:
    """Median milliseconds of one cached forward pass reading n tokens, for each n in `sizes`.

    The prompt is cached first; each timed pass reads n tokens after it and is then rolled back,
    which is exactly what a speculative verification step costs.
    """
    cache = DynamicCache(config=model.config)
    model(input_ids=prompt_ids, cache=cache, use_cache=True)
    length = cache.get_seq_length()
    fresh = torch.randint(0, model.config.vocab_size, (1, max(sizes)), generator=torch.Generator().manual_seed(0))
    fresh = fresh.to(prompt_ids.device)
    return {n: median_ms(lambda n=n: model(input_ids=fresh[:, :n], cache=cache, use_cache=True),
                         lambda: truncate_cache(cache, length), repeats) for n in sizes}


def median_ms(step: Callable[[], object], rollback: Callable[[], None], repeats: int = 15) -> float:
    """Median milliseconds of `step` over `repeats` runs after two warm-up runs, `rollback` after each."""
    return statistics.median(interleaved_samples_ms({"step": (step, rollback)}, repeats, warmup=2)["step"])


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
