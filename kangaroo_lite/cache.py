"""KV-cache helpers shared by every decoding method."""

from __future__ import annotations

from transformers import DynamicCache


def truncate_cache(cache: DynamicCache, length: int) -> None:
    """Drop cached positions beyond `length` in every layer (transformers 5.x `crop` counts back)."""
    current = cache.get_seq_length()
    if length > current:
        raise ValueError(f"cannot truncate a cache of {current} positions to {length}")
    cache.crop(length - current)
