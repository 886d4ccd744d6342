"""Speculative decoding with a draft model for many prompts at once.

The draft model and the target keep one KV cache each over the columns of a shared
`core.batch.RaggedLayout`. Each round the draft reads the columns it has not cached yet and
the rows' last tokens, then drafts in lockstep (`draft_rows.RowDrafts`: each row stops on its
own); the target verifies every row's drafts in one pass; each row accepts its own prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.batch import BatchRows, RaggedLayout, crop_caches, prepare_batch, select_cache_rows
from ..core.checks import eos_id
from ..core.draft_length import AcceptanceCalibration, ContextCostCurve, best_draft_length, curve_for
from ..core.result import DecodingResult
from .draft_rows import RowDrafts


def _forward(model: PreTrainedModel, cache: DynamicCache, layout: RaggedLayout, block: torch.Tensor,
             block_valid: torch.Tensor, keep: int) -> torch.Tensor:
    """One pass of `model` over the layout's columns its cache lacks, then `block`: the last `keep` logits."""
    ids, positions, mask = layout.pass_inputs(cache.get_seq_length(), block, block_valid)
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                 logits_to_keep=keep).logits


@torch.inference_mode()
def speculative_batch(target: PreTrainedModel, draft: PreTrainedModel, prompts: Sequence[torch.Tensor],
                      max_new_tokens: int, num_draft_tokens: int, temperature: float, top_p: float,
                      seed: int | None, adaptive_draft: bool, confidence_threshold: float,
                      tokenizer: PreTrainedTokenizerBase | None,
                      cost_curve: Mapping[int, float] | ContextCostCurve | None) -> list[DecodingResult]:
    """`speculative` on a batch (arguments checked there); row i samples with `seed + i`."""
    prompts = prepare_batch(prompts, target, max_new_tokens)
    rows = BatchRows("speculative", prompts, max_new_tokens, eos_id(target), seed)
    calibrations = [AcceptanceCalibration() for _ in prompts]
    draft_lengths = [num_draft_tokens] * len(prompts)  # per row: `adaptive_draft` changes them
    layout = RaggedLayout(prompts)
    cache, draft_cache = DynamicCache(config=target.config), DynamicCache(config=draft.config)
    while rows.active:
        device, active = layout.last.device, rows.active
        budgets = rows.budgets([draft_lengths[row] for row in active])
        drafts = RowDrafts(budgets, max(budgets + [1]), confidence_threshold, temperature, top_p,
                           [rows.generators[row] for row in active], eos_id(target), threshold_on_logits=True)
        token, step = layout.last, 0
        while drafts.any_drafting():
            step += 1
            ones = torch.ones(len(active), step, dtype=torch.bool, device=device)
            if step == 1:
                logits = _forward(draft, draft_cache, layout, token, ones, 1)[:, -1]
            else:
                mask, positions = layout.mask(ones), layout.block_positions(step)[:, -1:]
                logits = draft(input_ids=token, attention_mask=mask, position_ids=positions, cache=draft_cache,
                               use_cache=True, logits_to_keep=1).logits[:, -1]
            token = drafts.add(logits)
        counts = drafts.counts()
        if cost_curve is not None:
            for i, row in enumerate(active):
                if counts[i]:
                    counts[i] = best_draft_length(calibrations[row].corrected(drafts.confidences[i]),
                                                  curve_for(cost_curve, rows.context(i)),
                                                  None if temperature == 0 else 0)  # sampled: one by one
        longest = max(counts)
        block = torch.cat([layout.last, drafts.tokens[:, :longest].to(device)], 1)
        columns = torch.arange(longest + 1, device=device).unsqueeze(0)
        block_valid = columns <= torch.tensor(counts, device=device).unsqueeze(1)
        target_logits = _forward(target, cache, layout, block, block_valid, longest + 1)

        accepted_counts, last_tokens = [], []
        for i, row in enumerate(active):
            n = counts[i]
            step = drafts.verify(i, n, target_logits[i, : n + 1], rows.generators[row])
            if cost_curve is not None and n:
                step.info["calibration"] = calibrations[row].scale
                calibrations[row].update(drafts.confidences[i][:n], step.accepted)
            if n:
                step.info["draft_length"] = n
                if adaptive_draft:
                    longer = step.accepted == n
                    draft_lengths[row] = draft_lengths[row] + 2 if longer else max(1, draft_lengths[row] - 1)
            accepted_counts.append(step.accepted)
            kept = rows.record(i, step)
            last_tokens.append(kept[-1])
        layout.append(block, columns <= torch.tensor(accepted_counts, device=device).unsqueeze(1))
        layout.last = torch.tensor(last_tokens, device=device).unsqueeze(1)

        kept = rows.retire(tokenizer)
        if kept is not None and rows.active:
            layout.select(kept)
            select_cache_rows(cache, kept)
            select_cache_rows(draft_cache, kept)
        crop_caches(layout.crop(), cache, draft_cache)
    return rows.results()
