"""Distillation prompts the target writes itself: far more varied than the project's templates.

The templates of `distill_prompts` draw from a few dozen topics and sentences each, and an adapter
trained on replies to them agrees with the target about half as often on real questions as on
held-out replies to the templates. Here the target writes the material: for each prompt a topic
word is drawn from its own vocabulary, the target is asked (sampling) for a question, a word
problem, a news article or an encyclopedia paragraph about it, and what it wrote becomes a user
prompt of the matching Spec-Bench kind. None of it is Spec-Bench text.

Translation is left to the templates: a 135M model writes poor German, French or Spanish.
Records have the `distill_prompts` format, ids `written-<subtask>-<nnnn>`, and are appended to a
JSON-lines file, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.checks import check_positive
from ..models.loading import encode_chat

# subtask -> (what the target is asked to write about {topic}, how that becomes a user prompt)
REQUESTS: dict[str, tuple[str, str]] = {
    "mt_bench": ("Write one question that a curious person might ask an AI assistant about {topic}. "
                 "Give only the question.", "{text}"),
    "qa": ("Write one short trivia question about {topic}. Give only the question.", "{text}"),
    "math_reasoning": ("Write a short math word problem about {topic} that uses numbers. Give only the problem.",
                       "{text}"),
    "summarization": ("Write a short news article about {topic}.",
                      "Summarize the following article.\n\n{text}"),
    "rag": ("Write a short encyclopedia paragraph about {topic}.",
            "Answer the question using the document below.\n\n{text}\n\nQuestion: What does the document say "
            "about {topic}?"),
}


def topic_words(tokenizer: PreTrainedTokenizerBase, count: int, seed: int = 0, min_letters: int = 5) -> list[str]:
    """`count` distinct lower-case words of at least `min_letters` letters that are single tokens of the tokenizer."""
    check_positive("count", count)
    words = sorted({w.strip() for w in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
                    if w.startswith(" ") and w.strip().isalpha() and w.strip().islower()
                    and len(w.strip()) >= min_letters})
    if len(words) < count:
        raise ValueError(f"the tokenizer has only {len(words)} such words, {count} asked for")
    return random.Random(seed).sample(words, count)


def plan_prompts(tokenizer: PreTrainedTokenizerBase, per_subtask: int, seed: int = 0) -> list[dict]:
    """What to write, in a fixed order: {id, subtask, topic, request} per prompt (the same for the same seed)."""
    topics = topic_words(tokenizer, per_subtask * len(REQUESTS), seed)
    plan = []
    for s, (subtask, (request, _)) in enumerate(REQUESTS.items()):
        for n in range(per_subtask):
            topic = topics[s * per_subtask + n]
            plan.append({"id": f"written-{subtask}-{n:04d}", "subtask": subtask, "topic": topic,
                         "request": request.format(topic=topic)})
    return plan


def as_prompt(item: dict, text: str) -> dict | None:
    """The user prompt built from what the target wrote for `item`; None if it wrote nothing usable."""
    text = text.strip()
    if item["subtask"] in ("mt_bench", "qa", "math_reasoning"):
        text = text.split("\n\n")[0].strip()
    if len(text) < 20:
        return None
    frame = REQUESTS[item["subtask"]][1]
    return {"id": item["id"], "subtask": item["subtask"], "category": item["subtask"], "topic": item["topic"],
            "prompt": frame.format(text=text, topic=item["topic"])}


@torch.inference_mode()
def _sample_batch(target: PreTrainedModel, prompts: Sequence[list[int]], max_new_tokens: int, temperature: float,
                  pad_id: int, eos_id: int, seed: int) -> list[list[int]]:
    """Sampled continuations of unpadded prompts (left padding), each cut at its first EOS."""
    width = max(len(ids) for ids in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    torch.manual_seed(seed)
    out = target.generate(input_ids=ids.to(target.device), attention_mask=mask.to(target.device), do_sample=True,
                          temperature=temperature, top_p=0.95, max_new_tokens=max_new_tokens, eos_token_id=eos_id,
                          pad_token_id=pad_id)
    return [row[: row.index(eos_id)] if eos_id in row else row for row in out[:, width:].tolist()]


def write_prompts(target: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_path: str | Path,
                  per_subtask: int = 200, seed: int = 0, max_new_tokens: int = 120, temperature: float = 0.9,
                  batch_size: int = 16, progress: bool = True) -> dict:
    """Have the target write the material of `per_subtask` prompts per kind; append them to `out_path`.

    Returns {"written", "unusable": [ids]} for this call: what the target wrote too short to use is
    skipped and named (and tried again by a later call).
    """
    check_positive("batch_size", batch_size)
    check_positive("max_new_tokens", max_new_tokens)
    out = Path(out_path)
    done = set()
    if out.is_file():
        done = {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()}
    todo = [item for item in plan_prompts(tokenizer, per_subtask, seed) if item["id"] not in done]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out.parent.mkdir(parents=True, exist_ok=True)
    written, unusable = 0, []
    with out.open("a", encoding="utf-8") as sink, tqdm(total=len(todo), desc="writing", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            encoded = [encode_chat(tokenizer, item["request"])[0].tolist() for item in batch]
            batch_seed = zlib.crc32(f"{seed}:{batch[0]['id']}".encode())  # the same text after a resume
            texts = tokenizer.batch_decode(_sample_batch(target, encoded, max_new_tokens, temperature, pad, eos,
                                                         batch_seed), skip_special_tokens=True)
            for item, text in zip(batch, texts, strict=True):
                record = as_prompt(item, text)
                if record is None:
                    unusable.append(item["id"])
                    continue
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
            sink.flush()
            bar.update(len(batch))
    return {"written": written, "unusable": unusable}
