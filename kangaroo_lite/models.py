"""Loading the embedded default models, or any local Hugging Face causal LM, offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .corpus import format_prompt

DATA_DIR = Path(os.environ.get("KANGAROO_LITE_DATA", Path(__file__).resolve().parent.parent / "data"))


class DefaultModels(NamedTuple):
    """What `load_default` returns: unpack as `tokenizer, target, draft, adapter = …`."""

    tokenizer: PreTrainedTokenizerBase
    target: PreTrainedModel
    draft: PreTrainedModel
    adapter: Any


def _checkpoint_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face checkpoint")
    return path


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer saved with `save_pretrained` from a local folder (never the hub)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder does not exist: {path}")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load a local causal LM checkpoint (Llama, Qwen2, Mistral, …) in eval mode."""
    path = _checkpoint_dir(path)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"{path} holds a {config.model_type!r} model, which is not a causal language model")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise FileNotFoundError(f"{path} has no weights (*.safetensors or pytorch_model*.bin)")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    return model.to(device).eval()


def check_tokenizer_matches(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Raise `ValueError` when the tokenizer can produce ids the model has no embedding for."""
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
                         f"{model.config.vocab_size}: they do not belong together")


def check_same_vocabulary(target: PreTrainedModel, draft: PreTrainedModel) -> None:
    """Raise `ValueError` unless the target and the draft share one vocabulary size."""
    t, d = target.config.vocab_size, draft.config.vocab_size
    if t != d:
        raise ValueError(f"target vocabulary has {t} tokens but the draft's has {d}: "
                         "speculative decoding needs one shared tokenizer")


def load_models(target: str | Path, draft: str | Path, tokenizer: str | Path, adapter: str | Path | None = None,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> DefaultModels:
    """Tokenizer, target, draft and (optionally) a Kangaroo adapter from local folders, checked to fit."""
    tok = load_tokenizer(tokenizer)
    target_model = load_model(target, device, dtype)
    draft_model = load_model(draft, device, dtype)
    check_tokenizer_matches(tok, target_model)
    check_same_vocabulary(target_model, draft_model)
    adapter_model = None
    if adapter is not None:
        from .adapter import KangarooAdapter

        adapter_model = KangarooAdapter.from_pretrained(adapter, target_model).to(device=device, dtype=dtype)
    return DefaultModels(tok, target_model, draft_model, adapter_model)


def load_default(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 data_dir: str | Path = DATA_DIR) -> DefaultModels:
    """The embedded tokenizer, target, draft and trained Kangaroo adapter, from `data/`."""
    data_dir = Path(data_dir)
    adapter = data_dir / "models" / "adapter"
    return load_models(data_dir / "models" / "target", data_dir / "models" / "draft", data_dir / "tokenizer",
                       adapter if adapter.is_dir() else None, device, dtype)


def encode_chat(tokenizer: PreTrainedTokenizerBase, user_turn: str,
                history: list[tuple[str, str]] | None = None) -> torch.Tensor:
    """Token ids (1, n) of a chat prompt in the corpus format, ready for any decoding method."""
    if not user_turn.strip():
        raise ValueError("the prompt is empty")
    text = format_prompt(history or [], user_turn)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
