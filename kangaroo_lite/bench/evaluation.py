"""Model quality on the mini Spec-Bench: exact-answer accuracy per subtask and perplexity."""

from __future__ import annotations

import math
import re
from collections import defaultdict

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..decoding.autoregressive import autoregressive
from ..models.corpus import format_example, training_corpus
from ..models.loading import encode_chat

HELD_OUT_SEED = 99
_FINAL_NUMBER = re.compile(r"The answer is (-?\d+)\.?\s*$")


def _normalise(text: str) -> str:
    return " ".join(text.split())


_GSM8K_ANSWER = re.compile(r"####\s*(-?[\d,.]+)\s*$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _number(text: str) -> str:
    return text.replace(",", "").rstrip(".")


def is_correct(record: dict, reply: str) -> bool | None:
    """Whether a generated reply to the record's first turn is right; None where the record has no answer.

    Our synthetic questions: math's final "The answer is N" equals the reference number (the
    worked steps may differ), every other subtask's whole reply equals the reference reply. The
    real Spec-Bench: math (GSM8K) — the reply's last number equals the one after "####"; rag
    (Natural Questions) — the reply contains one of the reference answers; a reference reply
    (translation, summarization) must be matched exactly; MT-bench and qa (no reference) are
    not scored.
    """
    reply = _normalise(reply)
    references = record.get("reference") or []
    if record["category"] == "math_reasoning" and "answer" in record:  # ours
        found = _FINAL_NUMBER.search(reply)
        return bool(found) and found.group(1) == str(record["answer"])
    if record["category"] == "math_reasoning" and references and _GSM8K_ANSWER.search(references[0]):
        numbers = _NUMBER.findall(reply)
        return bool(numbers) and _number(numbers[-1]) == _number(_GSM8K_ANSWER.search(references[0]).group(1))
    if references and isinstance(references[0], list):  # Spec-Bench's rag: the acceptable answers
        return any(_normalise(answer).lower() in reply.lower() for answer in references[0])
    if references and "mt_bench_category" not in record:
        return reply == _normalise(references[0])
    return None


def evaluate_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, questions: list[dict],
                      max_new_tokens: int = 96, progress: bool = True) -> dict[str, float]:
    """Greedy exact-answer accuracy per category on the first turn of each question."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for record in tqdm(questions, desc="eval", disable=not progress):
        ids = encode_chat(tokenizer, record["turns"][0])
        reply = autoregressive(model, ids, max_new_tokens, tokenizer=tokenizer).text
        correct = is_correct(record, reply)
        if correct is not None:
            hits[record["category"]].append(correct)
    return {category: sum(v) / len(v) for category, v in hits.items()}


@torch.inference_mode()
def sequence_nll(model: PreTrainedModel, prompt_ids: list[int], tokens: list[int]) -> float:
    """Summed negative log-likelihood of `tokens` after `prompt_ids` under `model` (temperature 1)."""
    if not tokens:
        raise ValueError("no tokens to score")
    ids = torch.tensor([prompt_ids + tokens], device=model.device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits, -1)
    return float(-logp[torch.arange(len(tokens)), torch.tensor(tokens, device=model.device)].sum())


def output_perplexity(model: PreTrainedModel, prompt_ids: list[int], tokens: list[int]) -> float:
    """Perplexity of a generated continuation under `model`."""
    return math.exp(sequence_nll(model, prompt_ids, tokens) / len(tokens))


@torch.inference_mode()
def held_out_perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                        num_examples: int = 400, seed: int = HELD_OUT_SEED) -> float:
    """Per-token perplexity on corpus examples drawn with a seed the training never used."""
    total_nll, total_tokens = 0.0, 0
    for example in training_corpus(num_examples, seed=seed):
        ids = tokenizer(format_example(example), return_tensors="pt", add_special_tokens=False)["input_ids"]
        loss = model(input_ids=ids.to(model.device), labels=ids.to(model.device)).loss
        total_nll += float(loss) * (ids.shape[1] - 1)
        total_tokens += ids.shape[1] - 1
    return math.exp(total_nll / total_tokens)
