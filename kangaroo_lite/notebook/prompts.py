"""What the notebooks ask of a model set: defaults that differ per set, short real prompts, tuned options.

The real Spec-Bench has prompts of a few dozen tokens (MT-bench, QA) and of several hundred
(summarization, RAG); on a CPU the notebooks prefer the shortest of each subtask.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..bench.cost_model import cost_curve
from ..bench.methods import MEASURED, MODEL_SET_OPTIONS
from ..models.loading import encode_chat

T = TypeVar("T")


def model_default(value: T | None, model: str, **defaults: T) -> T:
    """`value`, or when it is None the default given for `model` (e.g. `model_default(None, "tiny", tiny=6)`)."""
    if model not in defaults:
        raise ValueError(f"no default for model set {model!r}; defaults given for {sorted(defaults)}")
    return defaults[model] if value is None else value


def prompt_length(tokenizer: PreTrainedTokenizerBase, record: dict) -> int:
    """Tokens in the chat prompt of a question's first turn, as `encode_chat` builds it."""
    return int(encode_chat(tokenizer, record["turns"][0]).shape[1])


def shortest_questions(tokenizer: PreTrainedTokenizerBase, questions: list[dict],
                       per_subtask: int | None = None) -> list[dict]:
    """The `per_subtask` questions of each subtask with the shortest first-turn prompts, shortest first.

    Subtasks keep the order in which they first appear; ties keep the file order. With
    `per_subtask=None` the questions are returned as they are (every one, in file order).
    """
    if per_subtask is None:
        return list(questions)
    if per_subtask < 1:
        raise ValueError(f"per_subtask must be >= 1 or None, got {per_subtask!r}")
    by_subtask: dict[str, list[dict]] = {}
    for record in questions:
        by_subtask.setdefault(record["category"], []).append(record)
    picked = []
    for records in by_subtask.values():
        lengths = {id(r): prompt_length(tokenizer, r) for r in records}
        picked += sorted(records, key=lambda r: lengths[id(r)])[:per_subtask]
    return picked


def benchmark_options(model: str, target: PreTrainedModel, prompt_ids: torch.Tensor,
                      repeats: int = 5) -> dict[str, dict]:
    """The benchmark's tuned per-method options of a model set (`MODEL_SET_OPTIONS`; {} for tiny).

    An option `cost_curve: "measured"` gets the target's cost curve, measured now on `prompt_ids`
    over only the pass sizes the tuned draft lengths need (a few seconds, not the benchmark's sweep).
    """
    options = {name: dict(values) for name, values in MODEL_SET_OPTIONS.get(model, {}).items()}
    wanting = [values for values in options.values() if values.get("cost_curve") == MEASURED]
    if wanting:
        longest = max(values.get("num_draft_tokens") or values.get("max_draft_tokens") or 1 for values in wanting)
        curve = cost_curve(target, prompt_ids, list(range(1, longest + 2)), repeats)
        for values in wanting:
            values["cost_curve"] = curve
    return options
