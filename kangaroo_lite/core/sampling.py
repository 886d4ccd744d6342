"""Logits warping (temperature, top-p) and the speculative accept/reject rule, written once.

Temperature 0 means greedy decoding. It is represented as a one-hot distribution on the
argmax, so that the same rejection rule that preserves a sampled distribution reduces to
exact prefix matching in the greedy case; `accept_greedy` is that special case computed
directly from the logits (the decoders' fast path, tested equal to the general rule).
"""

from __future__ import annotations

import math

import torch


def check_sampling(temperature: float, top_p: float) -> None:
    """Raise `ValueError` unless temperature is finite and >= 0 and top_p is in (0, 1]."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A `torch.Generator` seeded with `seed` (a fresh random seed when None)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def warp(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next-token probabilities (float32, last dim) after temperature and nucleus (top-p) warping."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def draft_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution a draft's confidence is read from: the softmax when greedy, else the warped one it samples."""
    return torch.softmax(logits.float(), -1) if temperature == 0 else warp(logits, temperature, top_p)


def top_probability(logits: torch.Tensor, temperature: float, top_p: float) -> float:
    """A draft's confidence: the top-1 probability of the distribution it is drawn from (softmax when greedy)."""
    return float(draft_distribution(logits, temperature, top_p).max())


def probs_of(logits: torch.Tensor, tokens: list[int], temperature: float, top_p: float) -> list[float]:
    """Probability of each token under its row of logits, for the trace (softmax when greedy)."""
    probs = draft_distribution(logits, temperature, top_p)
    return probs[torch.arange(len(tokens)), torch.tensor(tokens)].tolist()


def sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """Draw one token id from a 1-D probability vector."""
    return int(torch.multinomial(probs, 1, generator=generator))


def next_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Pick the next token from 1-D logits: argmax when temperature is 0, else a warped sample."""
    if temperature == 0:
        return int(logits.argmax())
    return sample(warp(logits, temperature, top_p), generator)


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """normalise(max(p - q, 0)): what a rejected draft from q leaves of p (p itself where rounding left nothing)."""
    residual = (p - q).clamp_min(0)
    if residual.sum() <= 0:  # only reachable through rounding: p and q equal
        return p
    return residual / residual.sum()


def accept_drafts(target_probs: torch.Tensor, draft_probs: torch.Tensor, drafted: list[int],
                  generator: torch.Generator) -> tuple[int, int]:
    """Speculative sampling: how many drafts to accept, and the target's own next token.

    `target_probs` has one row per drafted token plus one (k+1, V); `draft_probs` has k rows.
    Draft i is kept with probability min(1, p_i(x_i)/q_i(x_i)); at the first rejection the
    token is resampled from the normalised residual max(0, p_i - q_i); if all k are kept,
    a bonus token is sampled from row k of the target. The output is distributed as p.
    """
    k = len(drafted)
    if k:
        index = torch.arange(k)
        tokens = torch.tensor(drafted)
        ratio = target_probs[index, tokens] / draft_probs[index, tokens]
        rejected = (torch.rand(k, generator=generator) >= ratio).nonzero()
        if len(rejected):
            i = int(rejected[0])
            return i, sample(residual_distribution(target_probs[i], draft_probs[i]), generator)
    return k, sample(target_probs[k], generator)


def verify_drafts(target_logits: torch.Tensor, draft_probs: torch.Tensor | None, drafted: list[int],
                  temperature: float, top_p: float, generator: torch.Generator) -> tuple[int, int]:
    """How many drafts to accept and the target's own next token, from the target's logits (k+1, V).

    Greedy (temperature 0) uses `accept_greedy` and needs no draft distributions; otherwise the
    logits are warped and `accept_drafts` applies the rejection rule against `draft_probs` (k, V).
    """
    if temperature == 0:
        return accept_greedy(target_logits, drafted)
    return accept_drafts(warp(target_logits, temperature, top_p), draft_probs, drafted, generator)


def accept_greedy(target_logits: torch.Tensor, drafted: list[int]) -> tuple[int, int]:
    """`accept_drafts` at temperature 0: keep drafts while they equal the target's argmax.

    `target_logits` has one row per drafted token plus one (k+1, V). Returns how many drafts
    match and the target's argmax after them (the correction, or the bonus token).
    """
    choices = target_logits.argmax(-1).tolist()
    accepted = 0
    while accepted < len(drafted) and drafted[accepted] == choices[accepted]:
        accepted += 1
    return accepted, choices[accepted]
