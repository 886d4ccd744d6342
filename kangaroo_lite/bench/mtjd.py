"""Exact multi-token joint decoding (MTJD) for tiny vocabularies: the reference MTAD approximates.

The joint distribution of the next k tokens, p(x1..xk | prompt) = Π_d p(x_d | prompt, x<d),
is enumerated over all V**k continuations (each conditional warped by the same temperature
and top-p that MTAD uses), so that its mode, its entropy and its distance to MTAD's empirical
output can be computed exactly instead of claimed. Feasible only for tiny V and k.

Note: at temperature 1 without top-p, ancestral (token-by-token) sampling draws *exactly* from
this joint; MTJD's gain in the paper comes from favouring high-joint-likelihood continuations
(beam sampling, choosing the best beam, the joint-likelihood threshold), which these functions
let you measure: the joint log-likelihood of MTAD's outputs against sampling's expectation
(minus the entropy) and against the joint optimum.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import product

import torch
from transformers import PreTrainedModel

from ..core.checks import eos_id, prepare_prompt
from ..core.sampling import warp

MAX_SEQUENCES = 2**20  # V**k above this is refused: enumeration is for tiny vocabularies only


def _check_size(vocab: int, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if vocab**k > MAX_SEQUENCES:
        raise ValueError(
            f"{vocab}**{k} continuations is too many to enumerate (limit {MAX_SEQUENCES}): "
            "exact MTJD is for tiny vocabularies"
        )


@torch.inference_mode()
def joint_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    k: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 512,
) -> torch.Tensor:
    """log p(x1..xk | prompt) for every continuation, float64 of shape (V,) * k, by enumeration."""
    vocab = model.config.vocab_size
    _check_size(vocab, k)
    prompt = prepare_prompt(input_ids, model, k)
    logp = torch.zeros(1, dtype=torch.float64)
    continuations = torch.zeros(1, 0, dtype=torch.long, device=prompt.device)
    for _ in range(k):
        rows = []
        for chunk in continuations.split(batch_size):
            ids = torch.cat([prompt.expand(len(chunk), -1), chunk], 1)
            rows.append(torch.log(warp(model(input_ids=ids).logits[:, -1], temperature, top_p)).double().cpu())
        logp = (logp[:, None] + torch.cat(rows)).flatten()
        tokens = torch.arange(vocab, device=prompt.device).repeat(len(continuations))
        continuations = torch.cat([continuations.repeat_interleave(vocab, 0), tokens[:, None]], 1)
    return logp.reshape((vocab,) * k)


def joint_argmax(logp: torch.Tensor) -> tuple[list[int], float]:
    """The MTJD optimum: the most likely k-token continuation and its joint log-probability."""
    flat = int(logp.argmax())
    return [int(x) for x in torch.unravel_index(torch.tensor(flat), logp.shape)], float(logp.flatten()[flat])


def sample_joint(logp: torch.Tensor, n: int, generator: torch.Generator) -> list[tuple[int, ...]]:
    """n exact MTJD samples: k-token continuations drawn from the enumerated joint distribution."""
    flat = torch.multinomial(logp.flatten().exp(), n, replacement=True, generator=generator)
    index = torch.unravel_index(flat, logp.shape)
    return [tuple(int(x[i]) for x in index) for i in range(n)]


@torch.inference_mode()
def beam_search_joint(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    k: int,
    num_beams: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[tuple[list[int], float]]:
    """Deterministic beam search on joint log-probability; exhaustive (exact) when num_beams is None.

    Returns the surviving k-token beams, best first, with their joint log-probabilities. With
    num_beams >= V**(k-1) nothing is ever pruned, so the first beam is the exact MTJD optimum.
    """
    vocab = model.config.vocab_size
    _check_size(vocab, k)
    prompt = prepare_prompt(input_ids, model, k)
    width = vocab**k if num_beams is None else num_beams
    beams = torch.zeros(1, 0, dtype=torch.long, device=prompt.device)
    scores = torch.zeros(1, dtype=torch.float64)
    for _ in range(k):
        ids = torch.cat([prompt.expand(len(beams), -1), beams], 1)
        logq = torch.log(warp(model(input_ids=ids).logits[:, -1], temperature, top_p)).double().cpu()
        candidates = (scores[:, None] + logq).flatten()
        top = candidates.topk(min(width, len(candidates)))
        parents, tokens = top.indices // vocab, top.indices % vocab
        beams = torch.cat([beams[parents.to(beams.device)], tokens[:, None].to(beams.device)], 1)
        scores = top.values
    return [(b.tolist(), float(s)) for b, s in zip(beams, scores, strict=True)]


def outcome_distribution(logp: torch.Tensor, eos: int | None = None) -> dict[tuple[int, ...], float]:
    """The joint as a distribution over outcomes a decoder can emit: sequences cut after the first EOS."""
    outcomes: Counter = Counter()
    for tokens, prob in zip(
        product(range(logp.shape[0]), repeat=logp.dim()), logp.flatten().exp().tolist(), strict=True
    ):
        if eos is not None and eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
        outcomes[tokens] += prob
    return dict(outcomes)


def total_variation(p: dict, q: dict) -> float:
    """Total-variation distance between two distributions given as {outcome: probability}."""
    return 0.5 * sum(abs(p.get(x, 0.0) - q.get(x, 0.0)) for x in set(p) | set(q))


def empirical(samples: list[tuple[int, ...]]) -> dict[tuple[int, ...], float]:
    """Relative frequency of each outcome."""
    counts = Counter(samples)
    return {x: c / len(samples) for x, c in counts.items()}


@dataclass
class MTJDGap:
    """How far MTAD's first k tokens are from exact MTJD, measured on one prompt."""

    k: int
    runs: int
    tv: float  # TV distance, MTAD's empirical outcome distribution vs the exact joint
    tv_floor: float  # TV of `runs` exact joint samples vs the joint: the noise floor of `tv`
    mtad_logprob: float  # mean log p(x1..xk) of MTAD's outputs under the target
    sampling_logprob: float  # the same expectation for exact joint (= ancestral) sampling: minus the entropy
    optimum_logprob: float  # log p of the MTJD optimum (the most likely outcome)
    optimum_rate: float  # share of MTAD runs that emitted the optimum
    mean_accepted: float  # MTAD's tokens per target forward over these runs


def mtad_gap(
    target: PreTrainedModel,
    draft: PreTrainedModel,
    input_ids: torch.Tensor,
    k: int = 2,
    runs: int = 200,
    seed: int = 0,
    **mtad_options,
) -> MTJDGap:
    """Run MTAD `runs` times (seeds seed, seed+1, …) and measure the gap of its first k tokens to exact MTJD.

    Each run may generate k + γ tokens, so that the first round drafts its full γ; its first k
    tokens (cut after EOS) are the outcome. The exact joint uses the same temperature and top-p
    as `mtad_options` (defaults 1.0 and 1.0).
    """
    from ..decoding.mtad import mtad

    temperature, top_p = mtad_options.get("temperature", 1.0), mtad_options.get("top_p", 1.0)
    exact = outcome_distribution(joint_logprobs(target, input_ids, k, temperature, top_p), eos_id(target))
    length = k + mtad_options.get("num_draft_tokens", 4)
    results = [mtad(target, draft, input_ids, length, seed=seed + i, **mtad_options) for i in range(runs)]
    outputs = [tuple(r.tokens[:k]) for r in results]
    reference = list(exact)
    picks = torch.multinomial(
        torch.tensor([exact[x] for x in reference]),
        runs,
        replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimum = max(exact, key=exact.get)
    logp = {x: math.log(p) if p > 0 else -math.inf for x, p in exact.items()}
    return MTJDGap(
        k=k,
        runs=runs,
        tv=total_variation(empirical(outputs), exact),
        tv_floor=total_variation(empirical([reference[i] for i in picks.tolist()]), exact),
        mtad_logprob=sum(logp.get(x, -math.inf) for x in outputs) / runs,
        sampling_logprob=sum(p * logp[x] for x, p in exact.items() if p > 0),
        optimum_logprob=logp[optimum],
        optimum_rate=sum(x == optimum for x in outputs) / runs,
        mean_accepted=sum(len(r.tokens) for r in results) / sum(r.target_forwards for r in results),
    )
