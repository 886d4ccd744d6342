"""The baseline: one target forward pass per new token, with an explicit KV cache."""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.batch import as_batch
from ..core.checks import eos_id, prepare_prompt
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, make_generator, next_token
from .autoregressive_batch import autoregressive_batch


@torch.inference_mode()
def autoregressive(model: PreTrainedModel, input_ids: torch.Tensor, max_new_tokens: int,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                   tokenizer: PreTrainedTokenizerBase | None = None,
                   use_cache: bool = True,
                   attention_mask: torch.Tensor | None = None) -> DecodingResult | list[DecodingResult]:
    """Decode token by token: greedy at temperature 0, else seeded temperature/top-p sampling.

    With `use_cache=False` every step re-reads the whole sequence (to show what the cache saves).
    A batch (a list of prompts, or padded ids with `attention_mask`; `core.batch.as_batch`) is
    decoded at once and gives one result per prompt.
    """
    check_sampling(temperature, top_p)
    prompts = as_batch(input_ids, attention_mask)
    if prompts is not None:
        if not use_cache:
            raise ValueError("batched decoding always uses the KV cache")
        return autoregressive_batch(model, prompts, max_new_tokens, temperature, top_p, seed, tokenizer)
    ids = prepare_prompt(input_ids, model, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("autoregressive", ids[0].tolist(), max_new_tokens, eos_id(model))
    cache = DynamicCache(config=model.config) if use_cache else None
    sequence, fresh = ids, ids
    while not recorder.done:
        # Only the last position's logits are needed: the LM head skips the rest of the prompt.
        logits = model(input_ids=fresh if use_cache else sequence, cache=cache, use_cache=use_cache,
                       logits_to_keep=1).logits[0, -1]
        token = next_token(logits, temperature, top_p, generator)
        recorder.record(Step(emitted=[token]))
        fresh = torch.tensor([[token]], device=ids.device)
        sequence = torch.cat([sequence, fresh], dim=1)
    return recorder.finish(tokenizer)
