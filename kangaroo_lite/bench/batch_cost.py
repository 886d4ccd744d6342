"""What one target pass costs with many rows: time against batch size and new tokens per row.

At batch 1 a pass over a few more tokens costs little more than a pass over one (decoding is
bound by reading the weights), which is what speculation spends. Every row of a batch adds its
tokens to the same pass, so with B rows × k tokens the pass turns compute-bound and the extra
tokens stop being free: the reason speculation pays less as the batch grows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from ..core.cache import truncate_cache
from ..core.checks import check_positive
from .timing import median_ms


@torch.inference_mode()
def batch_pass_costs(model: PreTrainedModel, prompt_ids: torch.Tensor, batch_sizes: Sequence[int],
                     tokens_per_row: Sequence[int], repeats: int = 11) -> dict[int, dict[int, float]]:
    """Median milliseconds of one cached pass reading n new tokens in each of B rows: {B: {n: ms}}.

    Every row caches `prompt_ids` (1, L) first; each timed pass is rolled back, as a rejected
    verification is. The largest shape runs once untimed first: a process's first passes are slow.
    """
    for value in [*batch_sizes, *tokens_per_row]:
        check_positive("batch size and tokens per row", value)
    generator = torch.Generator().manual_seed(0)
    _pass_costs(model, prompt_ids, max(batch_sizes), tokens_per_row, 1, generator)  # warm-up: a cold first pass is slow
    return {batch: _pass_costs(model, prompt_ids, batch, tokens_per_row, repeats, generator) for batch in batch_sizes}


def _pass_costs(model: PreTrainedModel, prompt_ids: torch.Tensor, batch: int, tokens_per_row: Sequence[int],
                repeats: int, generator: torch.Generator) -> dict[int, float]:
    cache = DynamicCache(config=model.config)
    model(input_ids=prompt_ids.expand(batch, -1), cache=cache, use_cache=True)
    length = cache.get_seq_length()
    fresh = torch.randint(0, model.config.vocab_size, (batch, max(tokens_per_row)), generator=generator)
    fresh = fresh.to(prompt_ids.device)
    return {n: median_ms(lambda n=n: model(input_ids=fresh[:, :n], cache=cache, use_cache=True),
                         lambda: truncate_cache(cache, length), repeats) for n in tokens_per_row}


def batch_cost_curves(costs: dict[int, dict[int, float]]) -> dict[int, dict[int, float]]:
    """Per batch size, the cost of a pass over n tokens per row relative to one token per row."""
    return {batch: {n: ms / by_tokens[min(by_tokens)] for n, ms in by_tokens.items()}
            for batch, by_tokens in costs.items()}


def ms_per_token(costs: dict[int, dict[int, float]]) -> dict[int, dict[int, float]]:
    """Milliseconds per token read (pass time / (B × n)): how much batching and speculation amortise."""
    return {batch: {n: ms / (batch * n) for n, ms in by_tokens.items()} for batch, by_tokens in costs.items()}
