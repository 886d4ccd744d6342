"""Self-distillation data: the target's own greedy replies to prompts the project wrote, saved as JSON lines.

Kangaroo distils the target into its self-draft on replies the target itself would give, so the
adapter learns the distribution it must predict at decoding time. `generate_replies` answers
each prompt once (batched `generate`, left padding, greedy, stopping at EOS) and appends a record
`{id, subtask, prompt, prompt_ids, reply_ids, reply, finished}` per prompt, so an interrupted run
resumes where it stopped. `reply_examples` turns the records into training examples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.checks import check_positive
from ..models.loading import encode_chat


def read_replies(path: str | Path) -> list[dict]:
    """The complete records of a replies file (a torn last line of an interrupted run is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"replies file not found: {path}")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


@torch.inference_mode()
def _greedy_batch(target: PreTrainedModel, prompts: Sequence[list[int]], max_new_tokens: int,
                  pad_id: int, eos_id: int) -> list[list[int]]:
    """Greedy replies for unpadded prompts, each cut after its first EOS."""
    width = max(len(ids) for ids in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):  # left padding: every row's next token is at the end
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    out = target.generate(input_ids=ids.to(target.device), attention_mask=mask.to(target.device), do_sample=False,
                          max_new_tokens=max_new_tokens, eos_token_id=eos_id, pad_token_id=pad_id)
    replies = []
    for row in out[:, width:].tolist():
        replies.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return replies


def generate_replies(target: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[dict],
                     out_path: str | Path, max_new_tokens: int = 160, batch_size: int = 16,
                     progress: bool = True) -> Path:
    """Append the target's greedy reply to each prompt ({id, prompt, …}) not yet in `out_path`; returns the path."""
    check_positive("max_new_tokens", max_new_tokens)
    check_positive("batch_size", batch_size)
    out = Path(out_path)
    done = {r["id"] for r in read_replies(out)} if out.is_file() else set()
    todo = sorted(((p, encode_chat(tokenizer, p["prompt"])[0].tolist()) for p in prompts if p["id"] not in done),
                  key=lambda pair: len(pair[1]))  # similar lengths per batch: little padding
    out.parent.mkdir(parents=True, exist_ok=True)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with out.open("a", encoding="utf-8") as sink, tqdm(total=len(todo), desc="replies", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for (prompt, ids), reply in zip(batch, _greedy_batch(target, [i for _, i in batch], max_new_tokens,
                                                                  pad, eos), strict=True):
                record = {**prompt, "prompt_ids": ids, "reply_ids": reply, "finished": bool(reply and reply[-1] == eos),
                          "reply": tokenizer.decode(reply, skip_special_tokens=True)}
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
            bar.update(len(batch))
    return out


def reply_examples(records: Sequence[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, predicts-reply mask) per record: prompt + reply ids, True where the next token is a reply token."""
    examples = []
    for record in records:
        prompt, reply = record["prompt_ids"], record["reply_ids"]
        if not reply:
            continue
        ids = torch.tensor(prompt + reply)
        mask = torch.zeros(len(ids), dtype=torch.bool)
        mask[len(prompt) - 1 : len(ids) - 1] = True
        examples.append((ids, mask))
    return examples
