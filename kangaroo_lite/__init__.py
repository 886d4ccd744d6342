"""kangaroo_lite: speculative decoding, Kangaroo self-speculation and MTAD, small enough to read."""

from .decoding.autoregressive import autoregressive
from .decoding.speculative import speculative
from .models import (
    DefaultModels,
    encode_chat,
    load_default,
    load_model,
    load_tokenizer,
)
from .result import DecodingResult, Step

__all__ = [
    "DecodingResult",
    "DefaultModels",
    "Step",
    "autoregressive",
    "encode_chat",
    "load_default",
    "load_model",
    "load_tokenizer",
    "speculative",
]
__version__ = "0.1.0"
