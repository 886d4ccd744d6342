"""The speculative-decoding cost model: expected tokens per step and expected speedup from α, γ, c."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from .timing import forward_latency_ms


def _check_alpha(alpha: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"acceptance rate alpha must be in [0, 1], got {alpha!r}")


def expected_tokens_per_step(alpha: float, gamma: float) -> float:
    """Expected new tokens per target pass with γ drafts each accepted with probability α."""
    _check_alpha(alpha)
    if alpha == 1:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def expected_speedup(alpha: float, gamma: float, cost_ratio: float) -> float:
    """Leviathan et al.'s expected speedup: (1 − α^(γ+1)) / ((1 − α)(γc + 1))."""
    if cost_ratio < 0:
        raise ValueError(f"cost ratio c must be >= 0, got {cost_ratio!r}")
    return expected_tokens_per_step(alpha, gamma) / (gamma * cost_ratio + 1)


def cost_ratio(target: PreTrainedModel, draft: PreTrainedModel, prompt_ids: torch.Tensor) -> float:
    """c = latency of one draft forward step / latency of one target forward step (1 token each)."""
    return forward_latency_ms(draft, prompt_ids, [1])[1] / forward_latency_ms(target, prompt_ids, [1])[1]
