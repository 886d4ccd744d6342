"""Kangaroo: lossless self-speculative decoding with a double early exit (Liu et al. 2024).

The drafter is the target itself cut after `exit_layer` layers, followed by a small trained
adapter and the target's own LM head. Each round:

1. draft (layer early exit): the newest token runs through the shallow layers only, writing
   their KV cache, which *is* the target's cache for those layers; the adapter and the head
   propose the next token. The loop stops once the draft's top-1 probability for the token it
   just proposed falls below `threshold` (draft-step early exit; that token is still a draft,
   as in the official code), or after `max_draft_tokens`, or at the token budget;
2. verify: the deep layers (`exit_layer` … L-1), final norm and head read the exited hidden
   states of [last token, drafts] in one pass: the shallow layers are never recomputed;
3. accept the longest acceptable prefix (greedy: exact match; sampling: the lossless rejection
   rule) plus the target's own token, and cut every cache back to the accepted context.

Invariant between rounds: every target layer's cache holds `sequence` but its last token; the
adapter's cache plus the exited hidden states it has not read yet (`pending`) cover the same
positions. After a fully accepted round the adapter lacks the last draft, so it reads two
positions at the start of the next round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..adapter.model import KangarooAdapter, check_target
from ..core.batch import as_batch
from ..core.checks import check_non_negative, check_positive, check_unit_interval, eos_id, prepare_prompt
from ..core.draft_length import (
    AcceptanceCalibration,
    ContextCostCurve,
    DraftBackoff,
    best_draft_length,
    curve_for,
    padded_curve,
    padded_size,
)
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, make_generator, probs_of, top_probability, verify_drafts, warp
from .copy_drafts import COPY, CopyDrafts, point_mass, rival_value
from .draft_rows import BACKOFF, BUDGET, COST, EOS, MAX_DRAFT_TOKENS, THRESHOLD
from .kangaroo_batch import kangaroo_batch
from .kangaroo_tree import kangaroo_tree
from .self_draft import SelfDraft


def _first_estimate(first: tuple | None, calibration: AcceptanceCalibration, calibrated: bool, temperature: float,
                    top_p: float) -> float | None:
    """The acceptance estimate of the adapter's first draft this round (None when it did not draft)."""
    if first is None:
        return None
    confidence = top_probability(first[1], temperature, top_p)
    return calibration.corrected([confidence])[0] if calibrated else confidence


def _draft(
    model: SelfDraft,
    last: torch.Tensor,
    position: int,
    budget: int,
    threshold: float,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    eos: int | None = None,
    first: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple:
    """Draft up to `budget` tokens after `last` (1, 1) at `position`.

    `first`: the exited state of `last` and the adapter's logits after it, when already computed.
    Returns the drafted ids, their draft distributions (k, V; None when greedy) and logits (k, V), the confidences,
    the exited states of the tokens drafted from, [last, drafts but the last] (a list of (1, 1, h); the last
    draft's are computed only if it is kept: `_exit_newest`), and what stopped it early (EOS, THRESHOLD or None).
    """
    drafted, rows, dists, confidences, exited = [], [], [], [], []
    token, stop = last, None
    for i in range(budget):
        if i == 0 and first is not None:
            hidden, row = first
        else:
            hidden, rope = model.shallow(token, position + i)  # every draft needs its shallow KV for verification
            row = model.draft(hidden, rope, position + i)
        exited.append(hidden)
        if temperature == 0:
            confidence, choice = torch.softmax(row.float(), -1).max(-1)
        else:  # confidence in the distribution the draft actually samples from
            q = warp(row, temperature, top_p)
            choice = torch.multinomial(q, 1, generator=generator)[0]
            confidence = q.max()
            dists.append(q)
        drafted.append(int(choice))
        rows.append(row)
        confidences.append(float(confidence))
        if drafted[-1] == eos:  # nothing follows the end of the text: drafting on would be wasted
            stop = EOS
            break
        if confidences[-1] < threshold:
            stop = THRESHOLD
            break
        token = choice.view(1, 1)
    logits = torch.stack(rows) if rows else None
    q = torch.stack(dists) if dists else None  # None when greedy: verification matches argmaxes
    return drafted, q, logits, confidences, exited, stop


def _copy_states(model: SelfDraft, last: torch.Tensor, copied: list[int], position: int, read_last: bool,
                 adapter_after: bool) -> list[torch.Tensor]:
    """The shallow pass of the copied tokens (and of `last` at `position`, unless the adapter has read it),
    in one pass; the adapter reads their states later (when it drafts after the copy, the last copy's
    state is left to `_draft`). Returns the exited states of [last, copies] it computed."""
    tokens = torch.tensor([copied[:-1] if adapter_after else copied], device=last.device, dtype=torch.long)
    if not read_last:
        tokens = torch.cat([last, tokens], 1)
    if not tokens.shape[1]:
        return []
    states, _ = model.shallow(tokens, position + read_last)
    model.defer(states)
    return [states]


def _exit_newest(model: SelfDraft, last: torch.Tensor, drafted: list[int], position: int) -> torch.Tensor:
    """The shallow pass of the newest token to verify (the last kept draft, else `last`) at `position` + its index.

    The adapter reads its state next round, if it is accepted.
    """
    newest = torch.tensor([drafted[-1:]], device=last.device) if drafted else last
    hidden, _ = model.shallow(newest, position + len(drafted))
    model.defer(hidden)
    return hidden


@torch.inference_mode()
def kangaroo(
    target: PreTrainedModel,
    adapter: KangarooAdapter,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    max_draft_tokens: int = 6,
    threshold: float = 0.6,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    on_round: Callable[[SelfDraft, torch.Tensor], None] | None = None,
    cost_curve: Mapping[int, float] | ContextCostCurve | None = None,
    attention_mask: torch.Tensor | None = None,
    backoff: int = 4,
    copy_drafts: bool = True,
    max_copy_tokens: int = 8,
    min_match: int = 1,
    tree: bool = False,
    top_k: int = 3,
    max_nodes: int = 12,
) -> DecodingResult | list[DecodingResult]:
    """Kangaroo self-speculative decoding: lossless, greedy or sampled.

    A draft's confidence is the top-1 probability of its distribution: the softmax of its
    logits when greedy, the warped (temperature, top-p) distribution it samples from otherwise.
    Each step's `info` records `exit_layer`, the `confidences` of its drafts and `draft_stop`:
    "threshold" (the last draft's confidence fell below it; that draft is still verified),
    "eos" (the last draft is the end-of-text token), "max_draft_tokens", "budget" (the token
    budget left fewer drafts than `max_draft_tokens`), or "cost": with a `cost_curve` (the
    target's cost of a pass over n tokens relative to one, as `bench.cost_model.cost_curve`
    measures it; a `ContextCostCurve` gives it per context length) only the leading drafts worth
    their verification cost are verified
    (`core.draft_length.best_draft_length`), their confidences first rescaled to the acceptance
    this generation has seen (`core.draft_length.AcceptanceCalibration`; `info["calibration"]`).
    With a `cost_curve`, a round whose drafts were not worth verifying also pauses drafting for
    the next 1, 2, 4 … up to `backoff` rounds ("backoff": those rounds decode one token, as
    autoregressive decoding does; `core.draft_length.DraftBackoff`; 0: never pause).
    `on_round(state, sequence)` is called after the prefill and after every round, for
    inspection (the cache invariant tests use it).

    A batch (a list of prompts, or padded ids with `attention_mask`; `core.batch.as_batch`) is
    decoded at once (`kangaroo_batch`: each row drafts, verifies and accepts on its own) and
    gives one result per prompt.

    `tree=True` decodes with Kangaroo's tree mode (`kangaroo_tree`: one prompt at a time): each round
    the self-draft grows a token tree, `top_k` children per node, `max_draft_tokens` deep, the
    confidence exit `threshold` on a path's value, and the target verifies at most `max_nodes` of its
    nodes (fewer where the `cost_curve` says they are not worth it) in one pass with a tree mask.
    """
    check_sampling(temperature, top_p)
    check_positive("max_draft_tokens", max_draft_tokens)
    check_unit_interval("threshold", threshold)
    check_non_negative("backoff", backoff)
    check_positive("top_k", top_k)
    check_positive("max_nodes", max_nodes)
    check_target(target)
    if not isinstance(adapter, KangarooAdapter):
        raise TypeError(f"adapter must be a KangarooAdapter, got {type(adapter).__name__}")
    adapter.check_matches(target)
    prompts = as_batch(input_ids, attention_mask)
    if prompts is not None:
        if tree:
            raise ValueError("tree mode decodes one prompt at a time: batched trees are left for later")
        if on_round is not None:
            raise ValueError("on_round inspects one prompt's decoding: not available for a batch")
        return kangaroo_batch(target, adapter, prompts, max_new_tokens, max_draft_tokens, threshold, temperature,
                              top_p, seed, tokenizer, cost_curve, backoff, copy_drafts, max_copy_tokens, min_match)
    if tree:
        return kangaroo_tree(target, adapter, input_ids, max_new_tokens, max_draft_tokens, threshold, temperature,
                             top_p, seed, tokenizer, on_round, cost_curve, backoff, copy_drafts, max_copy_tokens,
                             min_match, top_k, max_nodes)
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("kangaroo", ids[0].tolist(), max_new_tokens, eos_id(target))
    pause = DraftBackoff(backoff if cost_curve is not None else 0)
    model = SelfDraft(target, adapter)
    model.check_window(ids.shape[1] + max_new_tokens)
    copies = CopyDrafts(ids[0].tolist(), max_copy_tokens, min_match) if copy_drafts else None

    # No separate prefill pass: the shallow layers read the prompt but its last token now; the
    # adapter reads it with the first draft, the deep layers with the first verification.
    sequence, unread = ids, None  # unread: exited states the deep layers have not read yet
    calibration = AcceptanceCalibration()
    if ids.shape[1] > 1:
        unread, _ = model.shallow(ids[:, :-1], 0)
        model.defer(unread)

    while not recorder.done:
        context = sequence.shape[1]
        budget = min(max_draft_tokens, recorder.remaining - 1)  # never draft past max_new_tokens
        measured = None if cost_curve is None else curve_for(cost_curve, context)
        curve = None if measured is None else padded_curve(measured)  # what a pass costs, padded where cheaper
        paused = budget > 0 and not pause.drafts_now()
        last = sequence[:, -1:]
        offered = copies is not None and recorder.remaining > 1 and copies.on_offer()
        drafts = budget > 0 and not paused
        copied = []
        if offered and drafts:  # a copy worth more than the adapter at its most trustworthy: no need to ask it
            best = calibration.best(calibrated=cost_curve is not None)
            copied = copies.propose(recorder.remaining - 1, curve, rival_value(best, budget, curve))
        first = None  # the adapter's first step: its confidence values the adapter against a copy
        if drafts and not copied:
            hidden, rope = model.shallow(last, context - 1)
            first = hidden, model.draft(hidden, rope, context - 1)
        if offered and not copied:
            estimate = _first_estimate(first, calibration, cost_curve is not None, temperature, top_p)
            copied = copies.propose(recorder.remaining - 1, curve, rival_value(estimate, budget, curve),
                                    None if first is None else int(first[1].argmax()))
        if copied:  # copy, then the adapter drafts on if it is active, the copy was whole and the budget allows
            after = min(max_draft_tokens, recorder.remaining - 1 - len(copied))
            after = 0 if first is None or copies.cut else after
            exited = ([first[0]] if first is not None else []) + _copy_states(
                model, last, copied, context - 1, first is not None, after > 0)
            drafted, q, draft_logits, confidences, more, stop = _draft(
                model, torch.tensor([copied[-1:]], device=ids.device), context - 1 + len(copied), after, threshold,
                temperature, top_p, generator, recorder.eos_token_id,
            )
            exited += more
            stop = stop or (COPY if not drafted else MAX_DRAFT_TOKENS if after == max_draft_tokens else BUDGET)
        else:
            drafted, q, draft_logits, confidences, exited, stop = _draft(
                model, last, context - 1, 0 if paused else budget, threshold, temperature, top_p, generator,
                recorder.eos_token_id, first,
            )
            stop = stop or (BACKOFF if paused else MAX_DRAFT_TOKENS if budget == max_draft_tokens else BUDGET)
        own = calibration.corrected(confidences) if cost_curve is not None else confidences
        copy_estimates = copies.confidences(len(copied)) if copied else []
        estimates = copy_estimates + own
        drafted, kept_copies = copied + drafted, len(copied)
        if cost_curve is not None and drafted:
            keep = best_draft_length(estimates, curve, None if temperature == 0 else len(copied))
            if not copied:
                pause.update(keep)
            if keep < len(drafted):  # the rest are not worth verifying; rollback forgets their states
                drafted, stop, kept_copies = drafted[:keep], COST, min(keep, len(copied))
                own_kept = keep - kept_copies
                confidences, draft_logits = confidences[:own_kept], draft_logits[:own_kept] if own_kept else None
                q = None if q is None or not own_kept else q[:own_kept]
        exited = torch.cat(exited, dim=1) if exited else None
        if exited is None or exited.shape[1] == len(drafted):  # the newest token to verify has no exited state yet
            newest = _exit_newest(model, last, drafted, context - 1)
            exited = newest if exited is None else torch.cat([exited, newest], dim=1)
        exited = exited[:, : len(drafted) + 1]
        # Verify: the deep layers read [last token, drafts] once, from their exited states (in the
        # first round after the rest of the prompt).
        if unread is not None:
            exited, unread = torch.cat([unread, exited], dim=1), None
        verified = len(drafted) + 1
        pad = 0 if measured is None else padded_size(measured, verified) - verified
        if pad:  # filler states after the drafts make the pass cheaper; causal, their results are dropped
            exited = torch.cat([exited, exited[:, -1:].expand(-1, pad, -1)], dim=1)
        target_logits = model.deep(exited, context - exited.shape[1] + verified + pad - 1, keep_last=verified + pad)
        target_logits = target_logits[:verified]
        if temperature > 0 and kept_copies:  # a copied token's draft distribution: a point mass on it
            copy_q = point_mass(drafted[:kept_copies], target_logits.shape[-1], ids.device)
            q = copy_q if q is None else torch.cat([copy_q, q])
        accepted, token = verify_drafts(target_logits, q, drafted, temperature, top_p, generator)
        step = Step(
            emitted=drafted[:accepted] + [token],
            drafted=drafted,
            accepted=accepted,
            info=dict(exit_layer=model.exit_layer, confidences=copy_estimates[:kept_copies] + confidences,
                      draft_stop=stop, copied=kept_copies),
        )
        if cost_curve is not None:
            step.info["calibration"] = calibration.scale
            if accepted >= kept_copies:  # the adapter's drafts were reached
                calibration.update(confidences, accepted - kept_copies)
        if drafted:
            own_probs = probs_of(draft_logits, drafted[kept_copies:], temperature, top_p) if confidences else []
            step.draft_probs = [1.0] * kept_copies + own_probs
            step.target_probs = probs_of(target_logits[:-1], drafted, temperature, top_p)
        kept = recorder.record(step)
        if copies is not None:
            copies.record(kept_copies, accepted, kept)
        sequence = torch.cat([sequence, torch.tensor([kept], device=ids.device)], dim=1)
        model.rollback(sequence.shape[1] - 1)
        if on_round is not None:
            on_round(model, sequence)
    return recorder.finish(tokenizer)
