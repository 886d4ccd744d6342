"""Kangaroo for many prompts at once: every row drafts, verifies and accepts on its own.

The rows draft in lockstep, one shallow pass + adapter pass per draft step for the whole batch;
a row that stops drafting (its threshold, EOS, its token budget) rides along until every row
has stopped, its extra drafts never verified. One deep pass then verifies every row's drafts,
each row accepts its own prefix, and `core.batch.RaggedLayout` keeps the accepted columns
per row (a rejected draft becomes a masked hole). The adapter reads the exited states of the
columns it has not read yet (`pending`) with its next draft step, as for one prompt.

Copy drafts (per row, a `CopyDrafts` over its own context) make, row by row, the decisions of the
single-prompt loop: after the first draft step each row values its adapter by that step's
confidence (`rival_value`; a paused row by none) and takes the copy its context offers where the
copy is worth more. A copying row's next drafts are forced to its copies (point-mass drafts, no
threshold), which run the shallow layers in the lockstep steps (one step per copied token, where
one prompt runs its copies in one pass); its adapter then drafts on after them
(`draft_rows.RowDrafts.force`). The cost model cuts copies and drafts as one list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..adapter.model import KangarooAdapter
from ..core.batch import BatchRows, RaggedLayout, crop_caches, prepare_batch, select_cache_rows
from ..core.checks import eos_id
from ..core.draft_length import AcceptanceCalibration, ContextCostCurve, DraftBackoff, best_draft_length, curve_for
from ..core.result import DecodingResult
from ..core.sampling import top_probability
from .copy_drafts import CopyDrafts, rival_value
from .draft_rows import BACKOFF, COST, RowDrafts
from .self_draft import SelfDraft


@torch.inference_mode()
def kangaroo_batch(target: PreTrainedModel, adapter: KangarooAdapter, prompts: Sequence[torch.Tensor],
                   max_new_tokens: int, max_draft_tokens: int, threshold: float, temperature: float,
                   top_p: float, seed: int | None, tokenizer: PreTrainedTokenizerBase | None,
                   cost_curve: Mapping[int, float] | ContextCostCurve | None, backoff: int, copy_drafts: bool = True,
                   max_copy_tokens: int = 8, min_match: int = 1) -> list[DecodingResult]:
    """`kangaroo` on a batch (arguments checked there); row i samples with `seed + i`."""
    prompts = prepare_batch(prompts, target, max_new_tokens)
    rows = BatchRows("kangaroo", prompts, max_new_tokens, eos_id(target), seed)
    calibrations = [AcceptanceCalibration() for _ in prompts]
    pauses = [DraftBackoff(backoff if cost_curve is not None else 0) for _ in prompts]
    model = SelfDraft(target, adapter)
    model.check_window(max(len(ids) for ids in prompts) + max_new_tokens)
    layout = RaggedLayout(prompts)
    copies = [CopyDrafts(ids.tolist(), max_copy_tokens, min_match) for ids in prompts] if copy_drafts else None

    def offer_copy(i: int, confidence: float | None, choice: int | None = None, best: float | None = None) -> bool:
        """Row i of this round (`active`, `budgets`, `curves`, `drafts`) copies its context's continuation if that
        is worth more than its adapter, valued by the first draft's `confidence` (calibrated with a cost curve;
        None: the adapter does not draft this round) and whether its top token `choice` is the copy's first, or
        before the adapter's first step by the `best` acceptance estimate it could have, as the single-prompt
        loop decides. Returns whether it copies."""
        row = active[i]
        remaining, curve = rows.recorders[row].remaining, curves[i]
        if copies is None or remaining <= 1 or not copies[row].on_offer():
            return False
        if confidence is not None and cost_curve is not None:
            confidence = calibrations[row].corrected([confidence])[0]
        rival = rival_value(confidence if best is None else best, budgets[i], curve)
        copied = copies[row].propose(remaining - 1, curve, rival, choice)
        if copied:  # the adapter drafts on after a whole copy where it drafts at all this round
            after = min(max_draft_tokens, remaining - 1 - len(copied))
            after = 0 if confidence is None or copies[row].cut else after
            drafts.force(i, copied, copies[row].confidences(len(copied)), after)
        return bool(copied)

    # The shallow layers read every prompt but its last token; the adapter reads them with the first
    # draft step (`pending`), the deep layers with the first verification (`unread`).
    pending = unread = None
    if layout.width:
        empty = layout.valid[:, :0]
        pending = unread = model.shallow_rows(layout.tokens, layout.positions(0), layout.mask(empty))

    while rows.active:
        width, active = layout.width, rows.active
        budgets = rows.budgets(max_draft_tokens)
        paused = [budget > 0 and not pauses[row].drafts_now() for row, budget in zip(active, budgets, strict=True)]
        drafts = RowDrafts([0 if pause else budget for pause, budget in zip(paused, budgets, strict=True)],
                           max_draft_tokens, threshold, temperature, top_p, [rows.generators[row] for row in active],
                           eos_id(target))
        curves = [None if cost_curve is None else curve_for(cost_curve, rows.context(i)) for i in range(len(active))]
        first = list(drafts.drafting)  # the rows whose adapter takes a first draft step
        for i, row in enumerate(active):
            if not first[i]:
                offer_copy(i, None)
            elif copies is not None:  # a copy worth more than the adapter at its most trustworthy: taken as is
                first[i] = not offer_copy(i, None, best=calibrations[row].best(calibrated=cost_curve is not None))
        exited = []
        token = layout.last
        while drafts.any_drafting():
            step = len(exited)
            ones = torch.ones(len(active), step + 1, dtype=torch.bool, device=token.device)
            mask, positions = layout.mask(ones), layout.block_positions(step + 1)[:, step:]
            hidden = model.shallow_rows(token, positions, mask)
            exited.append(hidden)
            read, read_positions = hidden, positions
            if pending is not None:  # columns whose exited states the adapter has not read yet
                start = model.adapter_cache.get_seq_length()
                read = torch.cat([pending, hidden], 1)
                read_positions = torch.cat([layout.positions(start), positions], 1)
                pending = None
            logits = model.draft_rows(read, read_positions, mask)
            if step == 0:  # the adapter's first draft values it against each row's copy
                for i in range(len(active)):
                    if first[i]:
                        offer_copy(i, top_probability(logits[i], temperature, top_p), int(logits[i].argmax()))
            token = drafts.add(logits)
        counts = drafts.counts()
        copied = [drafts.forced_count(i, count) for i, count in enumerate(counts)]
        stops = [BACKOFF if pause and not n else stop
                 for pause, n, stop in zip(paused, copied, drafts.stops(), strict=True)]
        if cost_curve is not None:
            for i, row in enumerate(active):
                if counts[i]:  # copies valued by their acceptance estimates, the adapter's drafts calibrated
                    estimates = drafts.confidences[i][: copied[i]] + \
                        calibrations[row].corrected(drafts.confidences[i][copied[i]:])
                    keep = best_draft_length(estimates, curves[i], None if temperature == 0 else copied[i])
                    if not copied[i]:
                        pauses[row].update(keep)
                    if keep < counts[i]:
                        counts[i], stops[i] = keep, COST
        longest = max(counts)
        block = torch.cat([layout.last, drafts.tokens[:, :longest].to(layout.last.device)], 1)
        if len(exited) == longest:  # the newest drafts have not run the shallow layers yet
            ones = torch.ones(len(active), longest + 1, dtype=torch.bool, device=block.device)
            exited.append(model.shallow_rows(block[:, -1:], layout.block_positions(longest + 1)[:, -1:],
                                             layout.mask(ones)))
        exited = torch.cat(exited[: longest + 1], 1)
        columns = torch.arange(longest + 1, device=block.device)
        block_valid = columns.unsqueeze(0) <= torch.tensor(counts, device=block.device).unsqueeze(1)
        positions = layout.block_positions(longest + 1)
        deep_input = exited
        if unread is not None:  # the first verification also reads the prompts
            deep_input = torch.cat([unread, exited], 1)
            positions = torch.cat([layout.positions(0), positions], 1)
            unread = None
        target_logits = model.deep_rows(deep_input, positions, layout.mask(block_valid), keep_last=longest + 1)

        accepted_counts, last_tokens = [], []
        for i, row in enumerate(active):
            step = drafts.verify(i, counts[i], target_logits[i, : counts[i] + 1], rows.generators[row])
            kept_copies = drafts.forced_count(i, counts[i])
            step.info.update(exit_layer=model.exit_layer, confidences=drafts.confidences[i][: counts[i]],
                             draft_stop=stops[i], copied=kept_copies)
            if cost_curve is not None:
                step.info["calibration"] = calibrations[row].scale
                if step.accepted >= kept_copies:  # the adapter's drafts were reached
                    calibrations[row].update(drafts.confidences[i][kept_copies: counts[i]], step.accepted - kept_copies)
            accepted_counts.append(step.accepted)
            kept = rows.record(i, step)
            if copies is not None:
                copies[row].record(kept_copies, step.accepted, kept)
            last_tokens.append(kept[-1])
        layout.append(block, columns.unsqueeze(0) <= torch.tensor(accepted_counts, device=block.device).unsqueeze(1))
        layout.last = torch.tensor(last_tokens, device=block.device).unsqueeze(1)

        kept = rows.retire(tokenizer)
        if not rows.active:
            break
        if kept is not None:
            layout.select(kept)
            select_cache_rows(model.cache, kept)
            select_cache_rows(model.adapter_cache, kept)
            exited = exited[kept]
            pending = None if pending is None else pending[kept]
        new_width = layout.crop()
        crop_caches(new_width, model.cache, model.adapter_cache)
        # Columns the adapter has not read (a round without any draft step read none): it reads them next round.
        read = model.adapter_cache.get_seq_length()
        start = width if pending is None else width - pending.shape[1]
        unread_states = exited if pending is None else torch.cat([pending, exited], 1)
        pending = unread_states[:, read - start: new_width - start] if read < new_width else None
    return rows.results()

