"""Speculative decoding with a draft model (Leviathan et al. 2023; Chen et al. 2023).

Each round: the draft proposes k tokens one by one; the target scores all of them in one
forward pass; the rejection rule keeps the longest acceptable prefix and the target adds
one token of its own. Both KV caches are then cut back to the accepted context.

Invariant between rounds: the target's cache holds every token of `sequence` but the last,
which is the next input of the target. The first round's verification pass reads the whole
prompt with the drafts (as Hugging Face does), so there is no separate prefill pass.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.batch import as_batch
from ..core.cache import truncate_cache
from ..core.checks import check_positive, check_unit_interval, eos_id, prepare_prompt
from ..core.draft_length import AcceptanceCalibration, ContextCostCurve, best_draft_length, curve_for
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, make_generator, probs_of, sample, verify_drafts, warp
from ..models.loading import check_same_vocabulary
from .speculative_batch import speculative_batch


class DraftModelProposer:
    """Proposes tokens with a small causal LM that keeps its own KV cache."""

    def __init__(self, draft: PreTrainedModel, temperature: float, top_p: float, generator: torch.Generator,
                 confidence_threshold: float = 0.0, eos: int | None = None):
        self.model, self.temperature, self.top_p, self.generator = draft, temperature, top_p, generator
        self.confidence_threshold, self.eos = confidence_threshold, eos
        self.cache = DynamicCache(config=draft.config)

    def propose(self, sequence: torch.Tensor, k: int) -> tuple[list[int], torch.Tensor | None, torch.Tensor]:
        """Draft up to k tokens after `sequence`; returns them, their draft probs (n, V; None when
        greedy) and logits (n, V).

        Drafting stops early after a token whose top-1 draft probability (softmax of the
        logits) is below `confidence_threshold`, as Hugging Face's assistant does, and after
        the end-of-text token `eos` (nothing follows it).
        """
        fresh = sequence[:, self.cache.get_seq_length():]  # tokens the draft has not cached yet
        greedy = self.temperature == 0
        drafted, probs, logits = [], [], []
        for _ in range(k):
            out = self.model(input_ids=fresh, cache=self.cache, use_cache=True, logits_to_keep=1)
            row = out.logits[0, -1]
            if greedy:  # the argmax: a one-hot q needs no sampling
                token = int(row.argmax())
            else:
                q = warp(row, self.temperature, self.top_p)
                token = sample(q, self.generator)
                probs.append(q)
            drafted.append(token)
            logits.append(row)
            if token == self.eos:
                break
            if self.confidence_threshold and torch.softmax(row.float(), -1).max() < self.confidence_threshold:
                break
            fresh = torch.tensor([[token]], device=sequence.device)
        return drafted, None if greedy else torch.stack(probs), torch.stack(logits)

    def rollback(self, length: int) -> None:
        """Forget cached positions beyond `length` (the accepted context)."""
        truncate_cache(self.cache, length)


@torch.inference_mode()
def speculative(target: PreTrainedModel, draft: PreTrainedModel, input_ids: torch.Tensor,
                max_new_tokens: int, num_draft_tokens: int = 4, temperature: float = 0.0,
                top_p: float = 1.0, seed: int | None = None, adaptive_draft: bool = False,
                confidence_threshold: float = 0.0,
                tokenizer: PreTrainedTokenizerBase | None = None,
                cost_curve: Mapping[int, float] | ContextCostCurve | None = None,
                attention_mask: torch.Tensor | None = None) -> DecodingResult | list[DecodingResult]:
    """Speculative decoding: lossless, greedy or sampled, with optional dynamic draft lengths.

    `adaptive_draft` applies Hugging Face's heuristic: +2 draft tokens after a round where all
    were accepted, -1 (never below 1) otherwise. `confidence_threshold` stops a round's drafting
    after a token the draft is less sure of (Hugging Face's `assistant_confidence_threshold`).
    With a `cost_curve` (the target's cost of a pass over n tokens relative to one; a
    `ContextCostCurve` gives it per context length) only the leading drafts worth their
    verification cost are verified, their confidences rescaled to the acceptance seen so far
    (`core.draft_length`). A batch (a list of prompts, or padded ids with `attention_mask`;
    `core.batch.as_batch`) is decoded at once (`speculative_batch`) and gives one result per prompt.
    """
    check_sampling(temperature, top_p)
    check_positive("num_draft_tokens", num_draft_tokens)
    check_unit_interval("confidence_threshold", confidence_threshold)
    check_same_vocabulary(target, draft)
    prompts = as_batch(input_ids, attention_mask)
    if prompts is not None:
        return speculative_batch(target, draft, prompts, max_new_tokens, num_draft_tokens, temperature, top_p, seed,
                                 adaptive_draft, confidence_threshold, tokenizer, cost_curve)
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("speculative", ids[0].tolist(), max_new_tokens, eos_id(target))
    proposer = DraftModelProposer(draft, temperature, top_p, generator, confidence_threshold, recorder.eos_token_id)
    cache = DynamicCache(config=target.config)

    # The first round's verification pass also reads the prompt: no separate prefill pass.
    sequence, k = ids, num_draft_tokens
    calibration = AcceptanceCalibration()
    while not recorder.done:
        context = sequence.shape[1]
        budget = min(k, recorder.remaining - 1)  # never draft past max_new_tokens
        drafted, q, draft_logits = proposer.propose(sequence, budget) if budget > 0 else ([], None, None)
        if cost_curve is not None and drafted:
            confidences = (torch.softmax(draft_logits.float(), -1) if q is None else q).max(-1).values.tolist()
            keep = best_draft_length(calibration.corrected(confidences), curve_for(cost_curve, context),
                                     None if temperature == 0 else 0)  # sampled drafts: decided one by one
            drafted, draft_logits, confidences = drafted[:keep], draft_logits[:keep], confidences[:keep]
            q = None if q is None else q[:keep]
        # Verify: one target pass over what it has not read yet (the prompt, or the last token) and the drafts.
        unread = sequence[:, cache.get_seq_length():]
        verify = torch.cat([unread, torch.tensor([drafted], device=ids.device, dtype=torch.long)], 1)
        target_logits = target(input_ids=verify, cache=cache, use_cache=True,
                               logits_to_keep=len(drafted) + 1).logits[0]
        accepted, token = verify_drafts(target_logits, q, drafted, temperature, top_p, generator)
        step = Step(emitted=drafted[:accepted] + [token], drafted=drafted, accepted=accepted)
        if cost_curve is not None and drafted:
            step.info["calibration"] = calibration.scale
            calibration.update(confidences, accepted)
        if drafted:
            step.draft_probs = probs_of(draft_logits, drafted, temperature, top_p)
            step.target_probs = probs_of(target_logits[:-1], drafted, temperature, top_p)
            step.info["draft_length"] = len(drafted)
        kept = recorder.record(step)
        sequence = torch.cat([sequence, torch.tensor([kept], device=ids.device)], dim=1)
        truncate_cache(cache, context + accepted)
        proposer.rollback(context + accepted)
        if adaptive_draft and drafted:
            k = k + 2 if accepted == len(drafted) else max(1, k - 1)
    return recorder.finish(tokenizer)
