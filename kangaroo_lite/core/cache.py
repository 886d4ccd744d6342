"""KV-cache helpers shared by every decoding method."""

from __future__ import annotations

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
