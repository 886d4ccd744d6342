"""How well a self-draft agrees with its target on benchmark questions, per subtask, with and without adapter.

The target answers each question's first turn greedily; on those reply positions we compare the
self-draft's next-token distribution with the target's: top-1 agreement, and Σ min(p, q) over
the target's top-k tokens (the expected acceptance of one draft; a slight underestimate, since the
mass beyond the top k is left out). "Without adapter" exits straight into the final norm and LM
head, as Hugging Face's `assistant_early_exit` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..adapter.distill import evaluate_on_features
from ..adapter.features import FeatureExample, target_features
from ..decoding.autoregressive import autoregressive
from ..model_sets.loading import DefaultModels
from ..models.loading import encode_chat
from .runner import pick_evenly


def question_features(models: DefaultModels, questions: Sequence[dict], exit_layer: int, per_subtask: int,
                      max_new_tokens: int, top_k: int = 32, progress: bool = True) -> dict[str, list[FeatureExample]]:
    """Per subtask: features of the target's greedy replies to the first turns of `per_subtask` questions."""
    by_subtask: dict[str, list[FeatureExample]] = {}
    subtasks = list(dict.fromkeys(q["category"] for q in questions))
    chosen = [q for s in subtasks for q in pick_evenly([q for q in questions if q["category"] == s], per_subtask)]
    for record in tqdm(chosen, desc="replies", unit="question", disable=not progress):
        prompt = encode_chat(models.tokenizer, record["turns"][0])
        reply = autoregressive(models.target, prompt, max_new_tokens).tokens
        ids = torch.cat([prompt[0], torch.tensor(reply, dtype=torch.long)])
        mask = torch.zeros(len(ids), dtype=torch.bool)
        mask[prompt.shape[1] - 1 : len(ids) - 1] = True
        parts = target_features(models.target, [(ids, mask)], [exit_layer], top_k)
        example = FeatureExample(ids, mask, parts[f"exited.{exit_layer}"][0], parts["topk_ids"][0].long(),
                                 parts["topk_logits"][0])
        by_subtask.setdefault(record["category"], []).append(example)
    return by_subtask


def drafter_quality(models: DefaultModels, questions: Sequence[dict], per_subtask: int = 10,
                    max_new_tokens: int = 64, progress: bool = True) -> dict[str, dict]:
    """{subtask (and "overall"): {with_adapter: {top1, acceptance}, without_adapter: {…}, positions}}."""
    if models.adapter is None:
        raise ValueError("the model set has no adapter to evaluate")
    features = question_features(models, questions, models.adapter.exit_layer, per_subtask, max_new_tokens,
                                 progress=progress)
    features["overall"] = [e for examples in features.values() for e in examples]
    report = {}
    for subtask, examples in features.items():
        with_adapter = evaluate_on_features(models.target, models.adapter, examples)
        without = evaluate_on_features(models.target, None, examples)
        report[subtask] = {
            "with_adapter": {k: with_adapter[k] for k in ("top1", "acceptance")},
            "without_adapter": {k: without[k] for k in ("top1", "acceptance")},
            "positions": with_adapter["positions"],
        }
    return report
