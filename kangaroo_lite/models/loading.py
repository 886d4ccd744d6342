"""Loading checkpoints offline: the embedded tiny models or any local Hugging Face causal LM; chat prompts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from .corpus import format_prompt
from .cpu_kernels import tune_linears


def _packaged_data() -> Path | None:
    """The data an installed wheel carries (kangaroo_lite/data), or None in a checkout (data/ beside the package)."""
    packaged = files("kangaroo_lite") / "data"
    return Path(str(packaged)) if packaged.is_dir() else None


# Where the tokenizer, models, adapters and question files are: $KANGAROO_LITE_DATA if set, else the installed
# package's copy, else the checkout's top-level data/ (an editable install, `make`'s venv).
PACKAGED_DATA = _packaged_data()
DATA_DIR = Path(os.environ.get("KANGAROO_LITE_DATA") or PACKAGED_DATA or Path(__file__).resolve().parents[2] / "data")
# Whether DATA_DIR is an installed package's own copy: commands write into it only when told to (--out).
DATA_IS_INSTALLED = not os.environ.get("KANGAROO_LITE_DATA") and PACKAGED_DATA is not None


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


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               tuned_kernels: bool = True) -> PreTrainedModel:
    """Load a local causal LM checkpoint (Llama, Qwen2, Mistral, …) in eval mode; on a CPU in float32 its linear
    layers get the kernels measured fastest for few rows (`tune_linears`) unless `tuned_kernels` is False."""
    path = _checkpoint_dir(path)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"{path} holds a {config.model_type!r} model, which is not a causal language model")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise FileNotFoundError(f"{path} has no weights (*.safetensors or pytorch_model*.bin)")
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    model = model.to(device).eval()
    if tuned_kernels:
        tune_linears(model)
    return model


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor "Loading weights" bar: a local load takes a second, the bar is noise."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


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


def encode_chat(tokenizer: PreTrainedTokenizerBase, user_turn: str,
                history: list[tuple[str, str]] | None = None) -> torch.Tensor:
    """Token ids (1, n) of a chat prompt, ready for any decoding method.

    A tokenizer with a chat template (SmolLM2's) formats the conversation with it and adds the
    assistant's generation prompt; the embedded tiny tokenizer has none and uses the corpus format.
    `history` holds the earlier (user, assistant) turns.
    """
    if not user_turn.strip():
        raise ValueError("the prompt is empty")
    if tokenizer.chat_template:
        messages = [{"role": role, "content": text} for pair in history or [] for role, text in
                    zip(("user", "assistant"), pair, strict=True)]
        messages.append({"role": "user", "content": user_turn})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = format_prompt(history or [], user_turn)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
