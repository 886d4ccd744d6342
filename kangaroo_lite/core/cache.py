"""KV-cache helpers shared by every decoding method."""

from __future__ import annotations

import torch
from transformers import DynamicCache


def truncate_cache(cache: DynamicCache, length: int) -> None:
    """Drop cached positions beyond `length` in every layer that holds more.

    Layers may hold different lengths (Kangaroo's shallow layers run ahead of the deep ones);
    transformers 5.x `crop` takes the negative count of positions to remove.
    """
    if length < 0:
        raise ValueError(f"cache length must be >= 0, got {length}")
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def compact_cache(cache: DynamicCache, start: int, keep: list[int]) -> None:
    """Keep the first `start` cached positions, then positions `start + k` for k in `keep` (increasing), in every layer.

    After a tree pass the cache holds every node; `keep` (the accepted path's node indices) leaves only
    the path. A layer keeps those of the positions it holds, and one holding `start` or fewer is left as
    it is (layers may hold different lengths, as in `truncate_cache`).
    """
    if start < 0 or any(k < 0 for k in keep) or keep != sorted(set(keep)):
        raise ValueError(f"need start >= 0 and increasing keep >= 0, got start={start}, keep={keep}")
    for layer in cache.layers:
        length = layer.get_seq_length()
        held = [start + k for k in keep if start + k < length]
        if held == list(range(start, start + len(held))):  # the path runs straight on: cropping is enough
            if length > start + len(held):
                layer.crop(start + len(held) - length)
            continue
        index = torch.tensor(held, dtype=torch.long, device=layer.keys.device)
        keys, values = layer.keys.index_select(-2, index), layer.values.index_select(-2, index)
        layer.crop(start - length)
        layer.update(keys, values)
