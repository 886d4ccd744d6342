"""The self-draft model of Kangaroo: the target split at its exit layer, run layer range by layer range.

The shallow layers (0 … exit_layer-1) draft and write the target's own KV cache for those
layers; the adapter and the (draft vocabulary's rows of the) LM head turn their exited states
into draft logits; the deep layers, final norm and head verify. Single prompts use integer
positions and implicit causal masks; batches (`*_rows` methods) pass per-row positions and the
2-D attention mask of a `core.batch.RaggedLayout`; token trees (Kangaroo's tree mode) pass a 4D tree
mask (`core.token_tree.tree_attention`) through the same methods and `draft_nodes`, which transformers'
mask builders hand on as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from ..adapter.model import KangarooAdapter
from ..adapter.vocab import spread_to_vocab
from ..core.cache import truncate_cache


def mask_function(config, layer: int) -> Callable:
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
        self.draft_head = adapter.draft_head(self.head)
        self.mask_functions = [mask_function(self.config, i) for i in range(len(self.layers))]
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
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Layers of one kind hold equal lengths, so each mask is built once, sized to the first
        # such layer's cache (shallow layers run ahead of deep ones while drafting). One new token
        # of a single prompt sees every cached position (check_window keeps sliding windows from
        # cutting any): no mask. A batch's 2-D `attention_mask` hides padding and rejected drafts.
        implicit, masks = hidden.shape[1] == 1 and attention_mask is None, {}
        for i in range(start, stop):
            build = self.mask_functions[i]
            if not implicit and build not in masks:
                masks[build] = build(
                    config=self.config,
                    inputs_embeds=hidden,
                    attention_mask=attention_mask,
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
        logits = self.draft_head(out[0, -1])
        if self.draft_vocab is None:
            return logits
        return spread_to_vocab(logits, self.draft_vocab, self.head.weight.shape[0])

    def _rope_rows(self, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE (cos, sin) of per-row positions (B, n), from the same table as `_rope`."""
        if not self.static_rope:
            return self.rotary(like, positions)
        self._rope(0, int(positions.max()) + 1, like)  # grows the table when needed
        _, cos, sin = self.rope_table
        return cos[0][positions], sin[0][positions]

    def shallow_rows(self, input_ids: torch.Tensor, positions: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
        """A batch's tokens (B, n) at `positions` through layers 0..exit_layer-1: their exited states."""
        hidden = self.embed(input_ids)
        return self._run_layers(hidden, 0, self.exit_layer, positions, self._rope_rows(positions, hidden),
                                attention_mask)

    def deep_rows(self, exited: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor,
                  keep_last: int) -> torch.Tensor:
        """A batch's exited states (B, n, h) through the deep layers, norm and head: logits (B, keep_last, V)."""
        hidden = self._run_layers(exited, self.exit_layer, len(self.layers), positions,
                                  self._rope_rows(positions, exited), attention_mask)
        return self.head(self.norm(hidden[:, -keep_last:]))

    def draft_rows(self, exited: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The adapter reads a batch's exited states (B, n, h); next-token draft logits of the last (B, V)."""
        rope = self._rope_rows(positions, exited)
        mask = self.adapter.causal_mask(exited, positions, self.adapter_cache, attention_mask)
        out = self.adapter(exited, rope, attention_mask=mask, cache=self.adapter_cache)
        logits = self.draft_head(out[:, -1])
        if self.draft_vocab is None:
            return logits
        return spread_to_vocab(logits, self.draft_vocab, self.head.weight.shape[0])

    def draft_nodes(self, exited: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The adapter reads tree nodes' exited states (1, n, h) at `positions` (1, n) under a 4D tree `mask`
        (`core.token_tree.tree_attention`): the draft logits after each node (n, V)."""
        out = self.adapter(exited, self._rope_rows(positions, exited), attention_mask=mask, cache=self.adapter_cache)
        logits = self.draft_head(out[0])
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
