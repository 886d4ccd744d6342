"""Copy-only speculative decoding: drafts copied from the context, verified by the target alone.

Prompt lookup decoding (Saxena 2023) made cost-aware: each round the context index
(`core.context_index`) proposes what followed the longest earlier match of the sequence's
suffix; with a `cost_curve` only the copies worth their verification cost are verified, valued
with the acceptance copies have had in this generation. No draft model, no adapter: what copying
alone gives, next to Kangaroo, which copies and drafts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.batch import as_batch
from ..core.cache import truncate_cache
from ..core.checks import eos_id, prepare_prompt
from ..core.draft_length import ContextCostCurve, curve_for, padded_curve, padded_size
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, make_generator, probs_of, verify_drafts
from .copy_drafts import COPY, CopyDrafts, point_mass, rival_value


@torch.inference_mode()
def lookup(target: PreTrainedModel, input_ids: torch.Tensor, max_new_tokens: int, max_copy_tokens: int = 8,
           min_match: int = 1, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
           tokenizer: PreTrainedTokenizerBase | None = None,
           cost_curve: Mapping[int, float] | ContextCostCurve | None = None,
           attention_mask: torch.Tensor | None = None) -> DecodingResult:
    """Decode one prompt with copied drafts only: lossless, greedy or sampled.

    A copied token is a draft with a point-mass distribution (accepted with probability p(x)).
    Each step's `info` records `copied` (its drafts, all copies), their acceptance estimates
    (`confidences`) and `draft_stop` "copy". Without a `cost_curve` every copy of up to
    `max_copy_tokens` tokens is verified; a round with no match decodes one token.
    """
    check_sampling(temperature, top_p)
    if as_batch(input_ids, attention_mask) is not None:
        raise ValueError("lookup decodes one prompt at a time: call it once per prompt")
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("lookup", ids[0].tolist(), max_new_tokens, eos_id(target))
    copies = CopyDrafts(ids[0].tolist(), max_copy_tokens, min_match)
    cache = DynamicCache(config=target.config)

    sequence = ids  # the target's cache holds every token of `sequence` but the last
    while not recorder.done:
        context = sequence.shape[1]
        measured = None if cost_curve is None else curve_for(cost_curve, context)
        curve = None if measured is None else padded_curve(measured)  # what a pass costs, padded where cheaper
        drafted = copies.propose(recorder.remaining - 1, curve, rival_value(None, 0, curve))
        estimates = copies.confidences(len(drafted))
        unread = sequence[:, cache.get_seq_length():]
        verified = len(drafted) + 1
        pad = 0 if measured is None else padded_size(measured, verified) - verified
        fillers = [sequence[0, -1].item()] * pad  # make the pass cheaper; causal, their results are dropped
        verify = torch.cat([unread, torch.tensor([drafted + fillers], device=ids.device, dtype=torch.long)], 1)
        target_logits = target(input_ids=verify, cache=cache, use_cache=True,
                               logits_to_keep=verified + pad).logits[0, :verified]
        q = point_mass(drafted, target_logits.shape[-1], ids.device) if temperature > 0 and drafted else None
        accepted, token = verify_drafts(target_logits, q, drafted, temperature, top_p, generator)
        step = Step(emitted=drafted[:accepted] + [token], drafted=drafted, accepted=accepted,
                    info=dict(copied=len(drafted), confidences=estimates, draft_stop=COPY))
        if drafted:
            step.draft_probs = [1.0] * len(drafted)
            step.target_probs = probs_of(target_logits[:-1], drafted, temperature, top_p)
        kept = recorder.record(step)
        copies.record(len(drafted), accepted, kept)
        sequence = torch.cat([sequence, torch.tensor([kept], device=ids.device)], dim=1)
        truncate_cache(cache, context + accepted)
    return recorder.finish(tokenizer)
