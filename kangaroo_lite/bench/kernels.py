"""Stock against tuned linear kernels (`models.cpu_kernels`): the target's pass over n new tokens timed with each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch
from transformers import PreTrainedModel

from ..models.cpu_kernels import describe_plans, kernel_plans, tune_linears
from .cost_model import pass_times

SIZES = (1, 2, 3, 4, 6, 8, 12, 16)


def compare_kernels(target: PreTrainedModel, prompt_ids: torch.Tensor, sizes: Sequence[int] = SIZES,
                    repeats: int = 9) -> dict:
    """Time cached passes over n new tokens after `prompt_ids` with the stock kernels, tune `target`'s linear layers
    (`tune_linears`, in place) and time them again. Per n: both times in ms (median and quartiles), the speedup of
    the medians, each pass's cost relative to its own kernels' pass over one token; and the plans chosen."""
    if kernel_plans(target):
        raise ValueError("the target's linear layers are tuned already: load it with tuned_kernels=False")
    stock = pass_times(target, prompt_ids, sizes, repeats)
    plans = tune_linears(target)
    tuned = pass_times(target, prompt_ids, sizes, repeats)
    rows = {n: {"stock_ms": asdict(stock[n]), "tuned_ms": asdict(tuned[n]),
                "speedup": stock[n].median / tuned[n].median,
                "stock_cost": stock[n].median / stock[sizes[0]].median,
                "tuned_cost": tuned[n].median / tuned[sizes[0]].median}
            for n in sizes}
    return {"context": int(prompt_ids.shape[1]), "threads": torch.get_num_threads(), "passes": rows,
            "plans": describe_plans(plans)}
