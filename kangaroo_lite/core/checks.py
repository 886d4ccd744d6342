"""Input validation shared by every decoding method: clear errors, never silent wrong answers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel


def context_length(model: PreTrainedModel) -> int:
    """The longest sequence the model was configured for."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 2**31)


def prepare_prompt(input_ids: torch.Tensor | Sequence[int], model: PreTrainedModel,
                   max_new_tokens: int) -> torch.Tensor:
    """Validate a batch-1 prompt and the token budget; returns ids of shape (1, n) on the model's device."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if isinstance(input_ids, str):
        raise TypeError("input_ids must be token ids, not text: encode it with the tokenizer first")
    ids = torch.as_tensor(input_ids)
    if ids.numel() == 0:
        raise ValueError("the prompt is empty: give at least one token")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"input_ids must be one sequence of shape (n,) or (1, n), or a batch (a list of sequences, "
                         f"or (batch, n) with an attention_mask), got shape {tuple(ids.shape)}")
    vocab = model.config.vocab_size
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise ValueError(f"input_ids hold ids outside the model's vocabulary [0, {vocab})")
    limit = context_length(model)
    if ids.shape[1] + max_new_tokens > limit:
        raise ValueError(f"prompt of {ids.shape[1]} tokens plus max_new_tokens={max_new_tokens} exceeds "
                         f"the model's context of {limit} tokens")
    return ids.long().to(model.device)


def check_unit_interval(name: str, value: float, allow_zero: bool = True) -> None:
    """Raise `ValueError` unless `value` is a number in [0, 1] ((0, 1] without `allow_zero`)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not (0 <= value <= 1) or (value == 0 and not allow_zero):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def check_positive(name: str, value: int) -> None:
    """Raise `ValueError` unless `value` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_non_negative(name: str, value: int) -> None:
    """Raise `ValueError` unless `value` is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def eos_id(model: PreTrainedModel) -> int | None:
    """The model's end-of-sequence id (the first one when several are configured)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    return eos[0] if isinstance(eos, list) else eos
