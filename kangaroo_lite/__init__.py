"""kangaroo_lite: speculative decoding, Kangaroo self-speculation and MTAD, small enough to read."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it

from .adapter.medusa import MedusaHeads
from .adapter.model import KangarooAdapter
from .adapter.training import draft_vocabulary, evaluate_drafter, train_adapter
from .core.result import DecodingResult, Step
from .decoding.autoregressive import autoregressive
from .decoding.kangaroo import kangaroo
from .decoding.lookup import lookup
from .decoding.medusa import medusa
from .decoding.mtad import mtad
from .decoding.speculative import speculative
from .model_sets.loading import DefaultModels, load_default, load_medusa_heads
from .models.loading import encode_chat, load_model, load_tokenizer

__all__ = [
    "DecodingResult",
    "DefaultModels",
    "KangarooAdapter",
    "MedusaHeads",
    "Step",
    "autoregressive",
    "draft_vocabulary",
    "encode_chat",
    "evaluate_drafter",
    "kangaroo",
    "load_default",
    "load_medusa_heads",
    "load_model",
    "load_tokenizer",
    "lookup",
    "medusa",
    "mtad",
    "speculative",
    "train_adapter",
]
__version__ = "0.1.0"
