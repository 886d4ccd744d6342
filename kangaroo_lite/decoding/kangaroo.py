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
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from ..adapter.model import KangarooAdapter, check_target
from ..adapter.vocab import spread_to_vocab
from ..core.cache import truncate_cache
from ..core.checks import check_positive, check_unit_interval, eos_id, prepare_prompt
from ..core.draft_length import AcceptanceCalibration, ContextCostCurve, best_draft_length, curve_for
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, make_generator, verify_drafts, warp
from .speculative import probs_of

THRESHOLD, MAX_DRAFT_TOKENS, BUDGET, EOS, COST = "threshold", "max_draft_tokens", "budget", "eos", "cost"


def _mask_function(config, layer: int) -> Callable:
    """The causal-mask builder the target uses for one layer (sliding window or full)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        sliding = layer_types[layer] == "sliding_attention"
    else:  # Mistral: one sliding window for every layer, when configured
        sliding = getattr(config, "sliding_window", None) is not None
    return create_sliding_window_causal_mask if sliding else create_causal_mask


class SelfDraft:
    """The target split at the exit layer: one KV cache for all its layers, one for the adapter."""

    def __init__(self, target: PreTrainedModel, adapter: KangarooAdapter):
        model = target.model
        self.config = target.config
        self.embed, self.layers, self.norm, self.head = model.embed_tokens, model.layers, model.norm, target.lm_head
        self.rotary, self.adapter, self.exit_layer = model.rotary_emb, adapter, adapter.exit_layer
        self.cache = DynamicCache(config=target.config)
        self.adapter_cache = DynamicCache()
        self.pending: torch.Tensor | None = None  # exited hidden states the adapter has not read yet
        # The draft scores only the adapter's draft vocabulary (when it has one): those rows of the shared head.
        self.draft_vocab = adapter.draft_vocab
        self.draft_head_weight, self.draft_head_bias = adapter.draft_head(self.head)
        self.mask_functions = [_mask_function(self.config, i) for i in range(len(self.layers))]
        # RoPE depends on the position only (unless it rescales with the length seen): computed once
        # for a table of positions, then sliced, instead of once per draft step.
        self.rope_table: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.static_rope = getattr(self.rotary, "rope_type", "default") not in ("dynamic", "longrope")

    def check_window(self, length: int) -> None:
        """Raise `ValueError` if a sequence of `length` tokens may outgrow a sliding attention window.

        Beyond the window a sliding cache forgets old positions and can no longer be rolled back.
        """
        window = getattr(self.config, "sliding_window", None)
        if create_sliding_window_causal_mask in self.mask_functions and window and length > window:
            raise ValueError(
                f"prompt plus max_new_tokens reach {length} positions, beyond "
                f"the model's sliding attention window of {window}: not supported"
            )

    def _rope(
        self, first: int, count: int, like: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Position ids (1, count) from `first` and their RoPE (cos, sin), from a table grown on demand."""
        end = first + count
        if not self.static_rope:
            positions = torch.arange(first, end, device=like.device).unsqueeze(0)
            return positions, self.rotary(like, positions)
        if self.rope_table is None or self.rope_table[0].shape[1] < end:
            size = max(end, 2 * (0 if self.rope_table is None else self.rope_table[0].shape[1]), 256)
            positions = torch.arange(size, device=like.device).unsqueeze(0)
            self.rope_table = (positions, *self.rotary(like, positions))
        positions, cos, sin = self.rope_table
        return positions[:, first:end], (cos[:, first:end], sin[:, first:end])

    def _run_layers(
        self,
        hidden: torch.Tensor,
        start: int,
        stop: int,
        positions: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        # Layers of one kind hold equal lengths, so each mask is built once, sized to the first
        # such layer's cache (shallow layers run ahead of deep ones while drafting). One new token
        # sees every cached position (check_window keeps sliding windows from cutting any): no mask.
        single, masks = hidden.shape[1] == 1, {}
        for i in range(start, stop):
            build = self.mask_functions[i]
            if not single and build not in masks:
                masks[build] = build(
                    config=self.config,
                    inputs_embeds=hidden,
                    attention_mask=None,
                    cache=self.cache,
                    position_ids=positions,
                    layer_idx=i,
                )
            hidden = self.layers[i](
                hidden,
                attention_mask=masks.get(build),
                position_ids=positions,
                cache=self.cache,
                use_cache=True,
                position_embeddings=rope,
            )
        return hidden

    def shallow(self, input_ids: torch.Tensor, first_position: int) -> tuple[torch.Tensor, tuple]:
        """Run tokens (1, n) through layers 0..exit_layer-1; returns the exited states and their RoPE."""
        hidden = self.embed(input_ids)
        positions, rope = self._rope(first_position, input_ids.shape[1], hidden)
        return self._run_layers(hidden, 0, self.exit_layer, positions, rope), rope

    def deep(self, exited: torch.Tensor, first_position: int, keep_last: int) -> torch.Tensor:
        """Run exited states (1, n, h) through the remaining layers, norm and head: logits of the last positions."""
        positions, rope = self._rope(first_position, exited.shape[1], exited)
        hidden = self._run_layers(exited, self.exit_layer, len(self.layers), positions, rope)
        return self.head(self.norm(hidden[:, -keep_last:]))[0]

    def draft(self, exited: torch.Tensor, rope: tuple, position: int) -> torch.Tensor:
        """Adapter + head on the newest exited state (after any pending ones): next-token logits (V,).

        Tokens outside the draft vocabulary get -inf: the draft never proposes them.
        """
        mask = None  # one new token attends to everything cached: no mask needed
        if self.pending is not None:
            exited = torch.cat([self.pending, exited], dim=1)
            self.pending = None
            positions, rope = self._rope(position + 1 - exited.shape[1], exited.shape[1], exited)
            mask = self.adapter.causal_mask(exited, positions, self.adapter_cache)
        out = self.adapter(exited, rope, attention_mask=mask, cache=self.adapter_cache)
        logits = torch.nn.functional.linear(out[0, -1], self.draft_head_weight, self.draft_head_bias)
        if self.draft_vocab is None:
            return logits
        return spread_to_vocab(logits, self.draft_vocab, self.head.weight.shape[0])

    def defer(self, exited: torch.Tensor) -> None:
        """Keep exited states for the adapter to read later (if they survive verification)."""
        self.pending = exited if self.pending is None else torch.cat([self.pending, exited], dim=1)

    def adapter_length(self) -> int:
        """Positions the adapter has read (cached) plus those pending."""
        pending = 0 if self.pending is None else self.pending.shape[1]
        return self.adapter_cache.get_seq_length() + pending

    def rollback(self, length: int) -> None:
        """Forget every position beyond `length` in the target's cache, the adapter's and `pending`."""
        truncate_cache(self.cache, length)
        read = self.adapter_cache.get_seq_length()
        if read >= length:
            truncate_cache(self.adapter_cache, length)
            self.pending = None
        elif self.pending is not None:
            self.pending = self.pending[:, : length - read]


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
) -> tuple:
    """Draft up to `budget` tokens after `last` (1, 1) at `position`.

    Returns the drafted ids, their draft distributions (k, V; None when greedy) and logits (k, V), the confidences,
    the exited states of the tokens drafted from, [last, drafts but the last] (a list of (1, 1, h); the last
    draft's are computed only if it is kept: `_exit_newest`), and what stopped it early (EOS, THRESHOLD or None).
    """
    drafted, rows, dists, confidences, exited = [], [], [], [], []
    token, stop = last, None
    for i in range(budget):
        hidden, rope = model.shallow(token, position + i)  # every draft needs its shallow KV for verification
        exited.append(hidden)
        row = model.draft(hidden, rope, position + i)
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
) -> DecodingResult:
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
    `on_round(state, sequence)` is called after the prefill and after every round, for
    inspection (the cache invariant tests use it).
    """
    check_sampling(temperature, top_p)
    check_positive("max_draft_tokens", max_draft_tokens)
    check_unit_interval("threshold", threshold)
    check_target(target)
    if not isinstance(adapter, KangarooAdapter):
        raise TypeError(f"adapter must be a KangarooAdapter, got {type(adapter).__name__}")
    adapter.check_matches(target)
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("kangaroo", ids[0].tolist(), max_new_tokens, eos_id(target))
    model = SelfDraft(target, adapter)
    model.check_window(ids.shape[1] + max_new_tokens)

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
        drafted, q, draft_logits, confidences, exited, stop = _draft(
            model, sequence[:, -1:], context - 1, budget, threshold, temperature, top_p, generator,
            recorder.eos_token_id,
        )
        stop = stop or (MAX_DRAFT_TOKENS if budget == max_draft_tokens else BUDGET)
        if cost_curve is not None and drafted:
            keep = best_draft_length(calibration.corrected(confidences), curve_for(cost_curve, context))
            if keep < len(drafted):  # the rest are not worth verifying; rollback forgets their states
                drafted, confidences, exited, stop = drafted[:keep], confidences[:keep], exited[: keep + 1], COST
                draft_logits = draft_logits[:keep]
                q = None if q is None else q[:keep]
        if len(exited) == len(drafted):  # the newest token to verify has not run the shallow layers yet
            exited = [*exited, _exit_newest(model, sequence[:, -1:], drafted, context - 1)]
        exited = torch.cat(exited, dim=1)
        # Verify: the deep layers read [last token, drafts] once, from their exited states (in the
        # first round after the rest of the prompt).
        if unread is not None:
            exited, unread = torch.cat([unread, exited], dim=1), None
        target_logits = model.deep(exited, context - exited.shape[1] + len(drafted), keep_last=len(drafted) + 1)
        accepted, token = verify_drafts(target_logits, q, drafted, temperature, top_p, generator)
        step = Step(
            emitted=drafted[:accepted] + [token],
            drafted=drafted,
            accepted=accepted,
            info=dict(exit_layer=model.exit_layer, confidences=confidences, draft_stop=stop),
        )
        if cost_curve is not None:
            step.info["calibration"] = calibration.scale
            calibration.update(confidences, accepted)
        if drafted:
            step.draft_probs = probs_of(draft_logits, drafted, temperature, top_p)
            step.target_probs = probs_of(target_logits[:-1], drafted, temperature, top_p)
        kept = recorder.record(step)
        sequence = torch.cat([sequence, torch.tensor([kept], device=ids.device)], dim=1)
        model.rollback(sequence.shape[1] - 1)
        if on_round is not None:
            on_round(model, sequence)
    return recorder.finish(tokenizer)
