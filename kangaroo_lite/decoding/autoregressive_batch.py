"""The baseline for many prompts at once: one target pass per new token of every unfinished row."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.batch import BatchRows, RaggedLayout, crop_caches, prepare_batch, select_cache_rows
from ..core.checks import eos_id
from ..core.result import DecodingResult, Step
from ..core.sampling import next_token


@torch.inference_mode()
def autoregressive_batch(model: PreTrainedModel, prompts: Sequence[torch.Tensor], max_new_tokens: int,
                         temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                         tokenizer: PreTrainedTokenizerBase | None = None) -> list[DecodingResult]:
    """Decode every prompt token by token in one batch; row i samples with `seed + i`.

    Each row's result has its own `wall_time`: the time until that row finished.
    """
    prompts = prepare_batch(prompts, model, max_new_tokens)
    rows = BatchRows("autoregressive", prompts, max_new_tokens, eos_id(model), seed)
    layout, cache = RaggedLayout(prompts), DynamicCache(config=model.config)
    while rows.active:
        ones = torch.ones_like(layout.last, dtype=torch.bool)
        ids, positions, mask = layout.pass_inputs(cache.get_seq_length(), layout.last, ones)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]
        layout.append(layout.last, ones)
        tokens = [next_token(logits[i], temperature, top_p, rows.generators[row]) for i, row in enumerate(rows.active)]
        for position, token in enumerate(tokens):
            rows.record(position, Step(emitted=[token]))
        layout.last = torch.tensor(tokens, device=layout.last.device).unsqueeze(1)
        kept = rows.retire(tokenizer)
        if kept is not None and rows.active:
            layout.select(kept)
            select_cache_rows(cache, kept)
            crop_caches(layout.crop(), cache)
    return rows.results()
