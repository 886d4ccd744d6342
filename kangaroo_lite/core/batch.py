"""Many prompts at once: the per-row bookkeeping every batched decoding method shares.

Rows of a batch accept different numbers of drafts in the same round, so their sequences grow
at different speeds while their KV caches are tensors of one length. `RaggedLayout` keeps the
caches' columns shared by all rows and marks, per row, which columns hold its tokens: the
prompts are left-padded, and a round appends one column per verified position to every row,
valid only where that row accepted it. A rejected draft therefore leaves a masked hole instead of
being cut out of the middle of a tensor; only columns no row needs are cropped. Each row's
RoPE positions count its own valid columns, so holes are invisible to the model: attention never
sees them (the 2-D attention mask) and positions skip them.

Invariant between rounds (as for one prompt): every model's cache covers a prefix of the
layout's columns, and each row's last token (`last`) is in no cache yet. A finished row leaves
the batch (`select`), so it costs nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from .cache import truncate_cache
from .checks import prepare_prompt
from .result import DecodingResult, Recorder, Step
from .sampling import make_generator


def as_batch(input_ids, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor] | None:
    """The prompts of a batched call, one 1-D tensor each; None for one prompt given the usual way.

    A batch is a list of id sequences (of any lengths), or a 2-D tensor with more than one row, or
    any 2-D tensor with an `attention_mask` (the padded form `generate` takes: the tokens where the
    mask is 1, left or right padding alike).
    """
    if isinstance(input_ids, (list, tuple)) and input_ids and not isinstance(input_ids[0], int):
        if attention_mask is not None:
            raise ValueError("attention_mask goes with padded ids in one tensor, not with a list of prompts")
        return [torch.as_tensor(ids) for ids in input_ids]
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        if attention_mask is not None:
            raise ValueError("attention_mask needs input_ids as a 2-D tensor (batch, length)")
        return None
    if attention_mask is None:
        return list(input_ids) if input_ids.shape[0] > 1 else None
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(input_ids.shape)}")
    return [ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask, strict=True)]


def prepare_batch(prompts: Sequence[torch.Tensor], model: PreTrainedModel, max_new_tokens: int) -> list[torch.Tensor]:
    """Validate every prompt as `prepare_prompt` does one; returns 1-D ids on the model's device."""
    if not prompts:
        raise ValueError("the batch is empty: give at least one prompt")
    checked = []
    for row, ids in enumerate(prompts):
        try:
            checked.append(prepare_prompt(ids, model, max_new_tokens)[0])
        except (ValueError, TypeError) as error:
            raise type(error)(f"prompt {row} of the batch: {error}") from None
    return checked


def row_generators(seed: int | None, rows: int, device: torch.device) -> list[torch.Generator]:
    """One generator per row: row i draws from `seed + i` (fresh random seeds when `seed` is None)."""
    return [make_generator(None if seed is None else seed + row, device) for row in range(rows)]


class BatchRows:
    """Per-row bookkeeping of a batched generation: a `Recorder` and a generator per prompt, the active rows.

    Positions (0 … active rows - 1) index the batch tensors of this round; `active[position]` is the
    prompt's index in the call, which results keep.
    """

    def __init__(self, method: str, prompts: Sequence[torch.Tensor], max_new_tokens: int, eos: int | None,
                 seed: int | None):
        self.recorders = [Recorder(method, ids.tolist(), max_new_tokens, eos) for ids in prompts]
        self.generators = row_generators(seed, len(prompts), prompts[0].device)
        self.active = list(range(len(prompts)))

    def budgets(self, most: int | Sequence[int]) -> list[int]:
        """Drafts each active row may propose: `most` (one for all, or one per active row), never past its token
        budget."""
        limits = [most] * len(self.active) if isinstance(most, int) else most
        return [min(limit, self.recorders[row].remaining - 1) for row, limit in zip(self.active, limits, strict=True)]

    def context(self, position: int) -> int:
        """The length of an active row's sequence (prompt and new tokens)."""
        result = self.recorders[self.active[position]].result
        return len(result.prompt_tokens) + len(result.tokens)

    def record(self, position: int, step: Step) -> list[int]:
        """Record an active row's step; returns the tokens kept (cut at EOS and the budget)."""
        return self.recorders[self.active[position]].record(step)

    def retire(self, tokenizer=None) -> torch.Tensor | None:
        """Finish the rows that are done; the positions of the rows left when some left (None: none did)."""
        keep = [i for i, row in enumerate(self.active) if not self.recorders[row].done]
        for row in self.active:
            if self.recorders[row].done:
                self.recorders[row].finish(tokenizer)
        if len(keep) == len(self.active):
            return None
        self.active = [self.active[i] for i in keep]
        return torch.tensor(keep, dtype=torch.long, device=self.generators[0].device)

    def results(self) -> list[DecodingResult]:
        """One result per prompt, in the call's order."""
        return [recorder.result for recorder in self.recorders]


def select_cache_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only `rows` (indices) in the batch dimension of every layer of `cache`."""
    for layer in cache.layers:
        if layer.is_initialized and layer.get_seq_length() > 0:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]


class RaggedLayout:
    """The shared cache columns of a batch: which token each column holds per row, and whether it counts."""

    def __init__(self, prompts: Sequence[torch.Tensor]):
        """Left-pad the prompts but their last tokens into columns; the last tokens wait in `last` (B, 1)."""
        width = max(len(ids) for ids in prompts) - 1
        device = prompts[0].device
        self.tokens = torch.zeros(len(prompts), width, dtype=torch.long, device=device)
        self.valid = torch.zeros(len(prompts), width, dtype=torch.bool, device=device)
        for row, ids in enumerate(prompts):
            if len(ids) > 1:
                self.tokens[row, width - len(ids) + 1:] = ids[:-1]
                self.valid[row, width - len(ids) + 1:] = True
        self.last = torch.stack([ids[-1:] for ids in prompts])

    @property
    def width(self) -> int:
        """The number of columns (every cache holds at most this many positions)."""
        return self.tokens.shape[1]

    def lengths(self) -> torch.Tensor:
        """Each row's number of cached tokens (B,): also the position of its last token."""
        return self.valid.sum(1)

    def positions(self, start: int) -> torch.Tensor:
        """RoPE positions of columns `start`… (B, width - start); a hole gets its next valid column's."""
        return (self.valid.cumsum(1) - self.valid.long())[:, start:]

    def block_positions(self, size: int) -> torch.Tensor:
        """Positions of `size` new columns after the layout (B, size): last token, then its drafts."""
        return self.lengths().unsqueeze(1) + torch.arange(size, device=self.valid.device)

    def pass_inputs(self, start: int, block: torch.Tensor,
                    block_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, positions and attention mask of a pass that reads columns `start`… (those a cache has
        not read yet) and then the new columns `block` (B, n), valid where `block_valid`."""
        ids = torch.cat([self.tokens[:, start:], block], 1)
        positions = torch.cat([self.positions(start), self.block_positions(block.shape[1])], 1)
        return ids, positions, self.mask(block_valid)

    def mask(self, block_valid: torch.Tensor) -> torch.Tensor:
        """The 2-D attention mask (B, width + n) of a pass that reads n new columns after the layout."""
        return torch.cat([self.valid, block_valid.to(torch.bool)], 1).long()

    def append(self, tokens: torch.Tensor, valid: torch.Tensor) -> None:
        """Add verified columns (B, n): `valid` marks those kept per row (their last token and accepted drafts)."""
        self.tokens = torch.cat([self.tokens, tokens], 1)
        self.valid = torch.cat([self.valid, valid.to(torch.bool)], 1)

    def crop(self) -> int:
        """Drop trailing columns that no row holds; returns the new width (crop every cache to it)."""
        held = self.valid.any(0).nonzero()
        width = int(held[-1]) + 1 if len(held) else 0
        self.tokens, self.valid = self.tokens[:, :width], self.valid[:, :width]
        return width

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices)."""
        self.tokens, self.valid, self.last = self.tokens[rows], self.valid[rows], self.last[rows]


def crop_caches(width: int, *caches: DynamicCache) -> None:
    """Cut every cache back to the layout's `width` columns."""
    for cache in caches:
        truncate_cache(cache, width)
