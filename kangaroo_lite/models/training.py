"""Training the embedded target and draft language models from scratch on the corpus.

A plain next-token training loop on packed sequences, run through Hugging Face Accelerate
(device placement, resumable state) with a fixed seed and a tqdm progress bar.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

MODEL_SHAPES: dict[str, dict] = {
    "target": dict(num_hidden_layers=8, hidden_size=256, intermediate_size=768,
                   num_attention_heads=4, num_key_value_heads=4),
    "draft": dict(num_hidden_layers=2, hidden_size=128, intermediate_size=384,
                  num_attention_heads=2, num_key_value_heads=2),
    "tiny": dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                 num_attention_heads=2, num_key_value_heads=2),
}


def model_config(shape: str, tokenizer: PreTrainedTokenizerBase, max_positions: int = 1024) -> LlamaConfig:
    """A `LlamaConfig` of a named shape (`target`, `draft`, `tiny`) for this tokenizer."""
    if shape not in MODEL_SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; expected one of {sorted(MODEL_SHAPES)}")
    return LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **MODEL_SHAPES[shape],
    )


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run."""

    steps: int = 2000
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200


def pack_tokens(tokenizer: PreTrainedTokenizerBase, texts: list[str], seq_len: int) -> torch.Tensor:
    """Concatenate the tokenized texts and cut the stream into rows of `seq_len` tokens."""
    ids = [i for row in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in row]
    rows = len(ids) // seq_len
    if rows == 0:
        raise ValueError(f"corpus has {len(ids)} tokens, fewer than one sequence of {seq_len}")
    return torch.tensor(ids[: rows * seq_len]).view(rows, seq_len)


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_model(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                out_dir: str | Path, cfg: TrainConfig, resume: bool = True) -> list[float]:
    """Train `model` on `texts`, checkpointing under `out_dir/checkpoint`; returns the loss curve.

    The final weights and tokenizer are written to `out_dir` with `save_pretrained`. With
    `resume`, a run restarts from the last checkpoint in `out_dir/checkpoint`.
    """
    out_dir = Path(out_dir)
    set_seed(cfg.seed)
    data = pack_tokens(tokenizer, texts, cfg.seq_len)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))
    accelerator = Accelerator()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    checkpoint = out_dir / "checkpoint"
    start, losses = 0, []
    if resume and (checkpoint / "progress.json").is_file():
        accelerator.load_state(str(checkpoint))
        progress = json.loads((checkpoint / "progress.json").read_text())
        start, losses = progress["step"], progress["losses"]
    model.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", unit="step")
    for step in bar:
        rows = torch.arange(step * cfg.batch_size, (step + 1) * cfg.batch_size) % len(data)
        batch = data[order[rows]].to(accelerator.device)
        loss = model(input_ids=batch, labels=batch).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            accelerator.save_state(str(checkpoint))
            (checkpoint / "progress.json").write_text(json.dumps({"step": step + 1, "losses": losses}))
    model = accelerator.unwrap_model(model)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out_dir)
    model.to(torch.float32)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps({"config": asdict(cfg), "losses": losses}))
    return losses
