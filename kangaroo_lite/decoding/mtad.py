"""MTAD: multi-token assisted decoding (Qin et al., ICLR 2025, arXiv 2407.09722).

Speculative decoding keeps the *target's* single-token distribution; MTAD instead approximates
multi-token joint decoding (MTJD): it prefers continuations whose joint likelihood is high.
Each round:

1. draft by **beam sampling**: the draft model keeps up to B beams; at every depth it samples
   B distinct (beam, next token) pairs with probability proportional to their joint draft
   probability q(x1..xd), and remembers each node's cumulative log q. Its KV cache holds one
   row per beam, expanded after the first depth and reordered by parent as beams are chosen;
2. verify in one target forward pass:
   - MTAD (single candidate, the official `BatchMTADStrategy`): the final beam with the highest
     joint draft probability is the candidate; one causal pass over [last token, candidate];
   - MMTAD (`multi_candidate=True`, the official `TreeMTADStrategy`): every node of every depth
     is scored at once with a tree attention mask (each node sees the context and its own
     ancestors only) and position ids equal to its depth;
3. accept on **joint likelihoods**: at depth d, a node passes when
   log p(x1..xd) - max_j log q(x1..xd of node j at depth d) > log τ (for a single candidate
   the max is over that candidate alone). The accepted length is the *deepest* passing depth
   (shallower failures do not stop it); among the nodes passing there the highest target joint
   probability wins. One more token is then sampled from the target at the next position, so
   every round emits at least one token. The rule is a deterministic threshold, not the
   rejection sampling of speculative decoding: MTAD is not lossless, by design.

Invariant between rounds (as in `speculative`): the target's cache holds every token of
`sequence` but the last; the draft's cache (batch 1) holds a prefix of `sequence`, and the
tokens it lacks are its next input.
"""

from __future__ import annotations

import math

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from ..core.cache import compact_cache, truncate_cache
from ..core.checks import check_positive, check_unit_interval, eos_id, prepare_prompt
from ..core.result import DecodingResult, Recorder, Step
from ..core.sampling import check_sampling, make_generator, sample, warp
from ..core.token_tree import check_tree_support
from ..models.loading import check_same_vocabulary
from .beam_tree import BeamTree, beam_sample, select_accepted, target_joint_logp, tree_attention


def _cached_draft_row(tree: BeamTree, path: list[int]) -> tuple[int, int]:
    """(cache row, depth) of the deepest accepted node whose path the draft's cache still holds.

    The cache rows are the nodes of depth tree.depth - 1; a row holds node (e, path[e-1]) when
    that node is its ancestor.
    """
    cached_depth = tree.depth - 1
    if cached_depth == 0:
        return 0, 0
    rows = [tree.ancestry(cached_depth, r) for r in range(tree.widths[cached_depth - 1])]
    for e in range(min(len(path), cached_depth), 0, -1):
        for r, ancestry in enumerate(rows):
            if ancestry[:e] == path[:e]:
                return r, e
    return 0, 0


class MTADDecoder:
    """The state of one MTAD generation: the sequence so far and both models' KV caches."""

    def __init__(
        self,
        target: PreTrainedModel,
        draft: PreTrainedModel,
        ids: torch.Tensor,
        num_beams: int,
        accept_threshold: float,
        temperature: float,
        top_p: float,
        generator: torch.Generator,
        multi_candidate: bool,
        confidence_threshold: float = 0.0,
    ):
        self.target, self.draft, self.sequence = target, draft, ids
        self.num_beams, self.log_threshold = num_beams, math.log(accept_threshold)
        self.temperature, self.top_p, self.generator = temperature, top_p, generator
        self.multi_candidate, self.confidence_threshold = multi_candidate, confidence_threshold
        self.eos = eos_id(target)
        self.target_cache = DynamicCache(config=target.config)
        self.draft_cache = DynamicCache(config=draft.config)

    def step(self, depth: int) -> Step:
        """One round: beam-sample `depth` tokens (0: none), verify, keep the accepted path, add a target token."""
        n, device = self.sequence.shape[1], self.sequence.device
        cached = self.target_cache.get_seq_length()
        fresh = self.sequence[:, cached:]
        if depth == 0:
            logits = self.target(input_ids=fresh, cache=self.target_cache, use_cache=True,
                                 logits_to_keep=1).logits[0, -1]
            return Step(emitted=[sample(warp(logits, self.temperature, self.top_p), self.generator)])

        drafted = self.draft_cache.get_seq_length()
        tree = beam_sample(
            self.draft,
            self.draft_cache,
            self.sequence[:, drafted:],
            depth,
            self.num_beams,
            self.temperature,
            self.top_p,
            self.generator,
            self.confidence_threshold,
            self.eos,
        )
        best = int(tree.joint_logq[-1].argmax())  # MTAD's candidate: the most likely final beam
        verified = tree if self.multi_candidate else tree.chain(tree.depth, best)

        # One target pass over [fresh tokens, candidate nodes]; row 0 predicts depth 1, row 1 + j follows node j.
        mask = positions = None
        if self.multi_candidate:
            mask, positions = tree_attention(verified, cached, fresh.shape[1], self.target.dtype, device)
        inputs = torch.cat([fresh, torch.cat(verified.tokens)[None]], 1)
        logits = self.target(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            cache=self.target_cache,
            use_cache=True,
            logits_to_keep=inputs.shape[1] - fresh.shape[1] + 1,
        ).logits[0]
        p = warp(logits, self.temperature, self.top_p)
        joint_logp = target_joint_logp(verified, p.log())
        accepted, index = select_accepted(joint_logp, verified.joint_logq, self.log_threshold)

        path = verified.ancestry(accepted, index) if accepted else []
        flat = [offset + i for offset, i in zip(verified.offsets(), path, strict=False)]
        token = sample(p[1 + flat[-1] if flat else 0], self.generator)
        emitted = (verified.path_tokens(accepted, index) if accepted else []) + [token]

        # Cut both caches to the accepted context: the target keeps the path's nodes, the draft one beam row.
        compact_cache(self.target_cache, n, flat)
        tree_path = path if self.multi_candidate else tree.ancestry(tree.depth, best)[:accepted]
        row, kept = _cached_draft_row(tree, tree_path)
        self.draft_cache.batch_select_indices(torch.tensor([row], device=device))
        truncate_cache(self.draft_cache, n + kept)

        end_depth, end = self._candidate(verified, accepted, index, best)
        return self._trace(verified, p, joint_logp, end_depth, end, accepted, emitted, tree.widths)

    def _candidate(self, verified: BeamTree, accepted: int, index: int, best: int) -> tuple[int, int]:
        """The node ending the recorded candidate: the deepest, most draft-likely descendant of the accepted node."""
        if not self.multi_candidate:
            return verified.depth, 0
        if accepted == 0:
            return verified.depth, best
        for d in range(verified.depth, accepted, -1):
            for i in verified.joint_logq[d - 1].argsort(descending=True).tolist():
                if verified.ancestry(d, i)[accepted - 1] == index:
                    return d, i
        return accepted, index

    def _trace(
        self,
        verified: BeamTree,
        p: torch.Tensor,
        joint_logp: list[torch.Tensor],
        depth: int,
        index: int,
        accepted: int,
        emitted: list[int],
        beams: list[int],
    ) -> Step:
        """The step's record: the candidate, its per-token and joint draft/target likelihoods."""
        path, offsets = verified.ancestry(depth, index), verified.offsets()
        rows = [0] + [1 + offsets[d] + i for d, i in enumerate(path[:-1])]  # the row predicting each token
        tokens = verified.path_tokens(depth, index)
        info = {
            "draft_logprob": [float(verified.joint_logq[d][i]) for d, i in enumerate(path)],
            "target_logprob": [float(joint_logp[d][i]) for d, i in enumerate(path)],
            "max_draft_logprob": [float(q.max()) for q in verified.joint_logq[:depth]],
            "log_threshold": self.log_threshold,
            "beams": beams,
            "verified_nodes": sum(verified.widths),
            "mode": "tree" if self.multi_candidate else "single",
            "draft_length": len(beams),
        }
        return Step(
            emitted=emitted,
            drafted=tokens,
            accepted=accepted,
            draft_probs=[math.exp(float(verified.token_logq[d][i])) for d, i in enumerate(path)],
            target_probs=[float(p[r, t]) for r, t in zip(rows, tokens, strict=True)],
            info=info,
        )


@torch.inference_mode()
def mtad(
    target: PreTrainedModel,
    draft: PreTrainedModel,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    num_draft_tokens: int = 4,
    num_beams: int = 4,
    accept_threshold: float = 0.5,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    multi_candidate: bool = False,
    confidence_threshold: float = 0.0,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> DecodingResult:
    """Multi-token assisted decoding: draft beam sampling, joint-likelihood verification with threshold τ.

    `num_draft_tokens` is γ, `num_beams` is B, `accept_threshold` is τ (official defaults: B = 4,
    τ = 0.5). `multi_candidate=True` verifies every beam at once with a tree mask (MMTAD).
    `confidence_threshold` > 0 ends a round's drafting early, after a depth where the most likely
    beam's newest token has draft probability below it (as `speculative`'s option; 0: fixed γ).
    MTAD is a sampling method: temperature 0 raises `ValueError` (use `speculative` for greedy).
    """
    check_sampling(temperature, top_p)
    if temperature == 0:
        raise ValueError(
            "MTAD is a sampling method: temperature must be > 0 (at 0 the joint verification has "
            "nothing to approximate and the official code warns of no gain); use speculative() "
            "for greedy decoding"
        )
    check_positive("num_draft_tokens", num_draft_tokens)
    check_positive("num_beams", num_beams)
    check_unit_interval("accept_threshold", accept_threshold, allow_zero=False)
    check_unit_interval("confidence_threshold", confidence_threshold)
    check_same_vocabulary(target, draft)
    ids = prepare_prompt(input_ids, target, max_new_tokens)
    if multi_candidate:
        check_tree_support(target, "multi_candidate", ids.shape[1] + max_new_tokens + num_draft_tokens)
    generator = make_generator(seed, ids.device)
    recorder = Recorder("mmtad" if multi_candidate else "mtad", ids[0].tolist(), max_new_tokens, eos_id(target))
    decoder = MTADDecoder(
        target, draft, ids, num_beams, accept_threshold, temperature, top_p, generator, multi_candidate,
        confidence_threshold,
    )
    while not recorder.done:
        kept = recorder.record(decoder.step(min(num_draft_tokens, recorder.remaining - 1)))
        decoder.sequence = torch.cat([decoder.sequence, torch.tensor([kept], device=ids.device)], dim=1)
    return recorder.finish(tokenizer)
