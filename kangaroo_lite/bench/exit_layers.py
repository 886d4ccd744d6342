"""Which exit layer to ship: Kangaroo with one adapter per exit layer, timed against autoregressive decoding.

A deeper exit drafts better (more of the target runs before the adapter) but each draft step
costs more and the verification pass reads fewer shared layers. Only a measurement on the
machine says where the balance lies: every adapter decodes the same prompts, interleaved with
the autoregressive baseline (warm-up, repeats, medians), greedy.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..adapter.model import KangarooAdapter
from ..core.result import acceptance_rate
from ..decoding.autoregressive import autoregressive
from ..decoding.kangaroo import kangaroo
from ..model_sets.loading import DefaultModels
from .cost_model import cost_curve
from .measure import interleaved
from .runner import bench_prompts


def compare_exit_layers(models: DefaultModels, adapters: Mapping[int, KangarooAdapter], questions: list[dict],
                        subtasks: list[str], per_subtask: int = 2, max_new_tokens: int = 48, repeats: int = 2,
                        options: Mapping[str, float] | None = None, threads: int = 1,
                        cost_aware: bool = True) -> dict[int, dict]:
    """{exit layer: speedup over autoregressive, #MAT, acceptance α, identical outputs} on the same prompts.

    With `cost_aware`, Kangaroo verifies only the drafts worth it under the cost curve measured first.
    """
    options = dict(options or {})
    prompts, _ = bench_prompts(models, questions, subtasks, per_subtask, max_new_tokens)
    ids = [p for _, _, p in prompts]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if cost_aware:
        options["cost_curve"] = cost_curve(models.target, ids[0])
    runners = {"autoregressive": lambda p: autoregressive(models.target, p, max_new_tokens)}
    for layer, adapter in adapters.items():
        runners[f"exit {layer}"] = lambda p, a=adapter: kangaroo(models.target, a, p, max_new_tokens, **options)
    try:
        timings = interleaved(runners, ids, repeats)
    finally:
        torch.set_num_threads(previous)
    base = timings["autoregressive"]
    reference = [p.result.tokens for p in base.prompts]
    report = {}
    for layer in adapters:
        timing = timings[f"exit {layer}"]
        steps = [s for p in timing.prompts for s in p.result.steps]
        tokens = sum(p.tokens for p in timing.prompts)
        report[layer] = {
            "speedup": timing.tokens_per_second / base.tokens_per_second,
            "mean_accepted": tokens / sum(p.result.target_forwards for p in timing.prompts),
            "acceptance_rate": acceptance_rate(steps),
            "identical": sum(p.result.tokens == ref for p, ref in zip(timing.prompts, reference, strict=True)),
            "prompts": len(ids),
        }
    return report
