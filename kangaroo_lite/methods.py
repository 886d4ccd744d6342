"""Every decoding method behind one call shape, for the demo, the benchmark and the notebooks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .decoding.autoregressive import autoregressive
from .decoding.speculative import speculative
from .models import DefaultModels
from .result import DecodingResult

Runner = Callable[..., DecodingResult]


def method_runners(models: DefaultModels) -> dict[str, Runner]:
    """name → f(input_ids, max_new_tokens, **options) for every method these models support."""
    tok = models.tokenizer
    runners: dict[str, Runner] = {
        "autoregressive": lambda ids, n, **kw: autoregressive(models.target, ids, n, tokenizer=tok, **kw),
        "speculative": lambda ids, n, **kw: speculative(models.target, models.draft, ids, n,
                                                        tokenizer=tok, **kw),
    }
    return runners


def run_method(models: DefaultModels, name: str, input_ids: torch.Tensor, max_new_tokens: int,
               **options) -> DecodingResult:
    """Run one named method; raises `ValueError` naming the known methods otherwise."""
    runners = method_runners(models)
    if name not in runners:
        raise ValueError(f"unknown method {name!r}; available: {sorted(runners)}")
    return runners[name](input_ids, max_new_tokens, **options)
