"""Training a Kangaroo adapter: soft-label distillation from the frozen target, held-out agreement, the vocabulary."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_causal_mask

from ..core.checks import check_positive
from ..models.corpus import ASSISTANT, Example, format_example
from .checkpoint import digest, read_checkpoint, save_checkpoint
from .model import DRAFT_VOCAB, KangarooAdapter, check_exit_layer, check_target, target_fingerprint
from .vocab import draft_vocab_of, spread_to_vocab


def _reply_mask(ids: list[int], assistant_id: int | None, eos_id: int | None) -> list[bool]:
    """True on reply tokens: after each `<|assistant|>` up to and including `</s>` (all, without one)."""
    if assistant_id is None:
        return [True] * len(ids)
    mask, inside = [], False
    for token in ids:
        mask.append(inside)
        if inside and token == eos_id:
            inside = False
        elif token == assistant_id:
            inside = True
    return mask


def encode_corpus(
    tokenizer: PreTrainedTokenizerBase, corpus: Sequence[Example | str], max_length: int = 512
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Token ids and a loss mask per example; the mask marks positions whose *next* token is a reply token."""
    texts = [text if isinstance(text, str) else format_example(list(text)) for text in corpus]
    assistant_id = tokenizer.convert_tokens_to_ids(ASSISTANT)
    if not isinstance(assistant_id, int) or tokenizer.convert_ids_to_tokens(assistant_id) != ASSISTANT:
        assistant_id = None  # not our chat format: learn every position
    encoded = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids = ids[:max_length]
        reply = _reply_mask(ids, assistant_id, tokenizer.eos_token_id)
        predicts_reply = reply[1:] + [False]  # position j is trained to predict token j + 1
        if len(ids) > 1 and any(predicts_reply):
            encoded.append((torch.tensor(ids), torch.tensor(predicts_reply)))
    return encoded


def draft_vocabulary(
    tokenizer: PreTrainedTokenizerBase, corpus: Sequence[Example | str], size: int = 1024, max_length: int = 512
) -> list[int]:
    """The `size` tokens the corpus's replies use most (fewer if they use fewer) plus EOS, for `set_draft_vocab`."""
    return draft_vocab_of(encode_corpus(tokenizer, corpus, max_length), size, tokenizer.eos_token_id)


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Right padding needs no attention mask: under causal attention no real token sees the pads.
    length = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.bool)
    for row, (tokens, loss_mask) in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = loss_mask
    return ids, mask


def _draft_and_target_logits(
    target: PreTrainedModel, adapter: nn.Module | None, exit_layer: int, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-draft logits (with grad through the adapter) and the full target's logits, on masked positions."""
    with torch.no_grad():
        out = target.model(input_ids=ids, output_hidden_states=True)
        exited = out.hidden_states[exit_layer]  # entry 0 is the embeddings
        target_logits = target.lm_head(out.last_hidden_state[mask]).float()
    if adapter is None:  # no adapter: exit straight into the final norm and head (LayerSkip-style)
        drafted = target.model.norm(exited)
    else:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        rope = target.model.rotary_emb(exited, positions)
        causal = create_causal_mask(
            config=target.config,
            inputs_embeds=exited,
            attention_mask=None,
            cache=None,
            position_ids=positions,
        )
        drafted = adapter(exited, rope, attention_mask=causal)
    return target.lm_head(drafted[mask]).float(), target_logits


def _soft_cross_entropy(draft_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of -Σ p_target log p_draft."""
    return -(torch.softmax(target_logits, -1) * torch.log_softmax(draft_logits, -1)).sum(-1).mean()


@torch.no_grad()
def _evaluate(
    target: PreTrainedModel,
    adapter: nn.Module | None,
    exit_layer: int,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    pad_id: int,
) -> dict:
    loss = top1 = acceptance = positions = 0.0
    for start in range(0, len(data), batch_size):
        ids, mask = _collate(data[start : start + batch_size], pad_id)
        draft_logits, target_logits = _draft_and_target_logits(
            target, adapter, exit_layer, ids.to(target.device), mask.to(target.device)
        )
        n = len(target_logits)
        loss += _soft_cross_entropy(draft_logits, target_logits).item() * n
        vocab = getattr(adapter, DRAFT_VOCAB, None)
        if vocab is not None:  # agreement of the drafter the decoder runs: over its draft vocabulary only
            draft_logits = spread_to_vocab(draft_logits[:, vocab], vocab, draft_logits.shape[-1])
        p, q = torch.softmax(target_logits, -1), torch.softmax(draft_logits, -1)
        top1 += (p.argmax(-1) == q.argmax(-1)).sum().item()
        acceptance += torch.minimum(p, q).sum().item()
        positions += n
    positions = max(positions, 1)
    return dict(held_out_loss=loss / positions, top1=top1 / positions, acceptance=acceptance / positions)


def evaluate_drafter(
    target: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    corpus: Sequence[Example | str],
    exit_layer: int,
    adapter: KangarooAdapter | None = None,
    batch_size: int = 8,
    max_length: int = 512,
) -> dict:
    """Soft-label loss, top-1 agreement and expected acceptance Σ min(p, q) of a self-draft on reply tokens.

    The loss is over the whole vocabulary (the training objective); agreement and acceptance
    are over the adapter's draft vocabulary when it has one, as the decoder drafts.

    With `adapter=None` the draft exits straight into the final norm and LM head, as Hugging
    Face's `assistant_early_exit` does: the baseline the adapter must beat.
    """
    check_target(target)
    check_exit_layer(target, exit_layer)
    if adapter is not None and adapter.exit_layer != exit_layer:
        raise ValueError(f"adapter exits after layer {adapter.exit_layer}, not {exit_layer}")
    data = encode_corpus(tokenizer, corpus, max_length)
    if not data:
        raise ValueError("the corpus has no reply tokens to evaluate on")
    was_training = adapter.training if adapter is not None else False
    if adapter is not None:
        adapter.eval()
    try:
        return _evaluate(target, adapter, exit_layer, data, batch_size, _pad_id(tokenizer))
    finally:
        if adapter is not None:
            adapter.train(was_training)


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _split(data: list, held_out: float | int, seed: int) -> tuple[list, list]:
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    count = int(held_out) if held_out >= 1 else round(held_out * len(data))
    count = min(max(count, 1), len(data) - 1)
    return [data[i] for i in order[count:]], [data[i] for i in order[:count]]


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def optimise(model: nn.Module, loader: Iterable, batch_loss: Callable[[Any], torch.Tensor], steps: int,
             accelerator: Accelerator, optimizer: torch.optim.Optimizer, scheduler: Any, clip: float, eval_every: int,
             log: Callable[[int, list[float]], None], history: list[dict], bar: tqdm, *, start: int = 0,
             losses: Sequence[float] = (), checkpoint_every: int = 0,
             checkpoint: Callable[[int, list[float]], None] | None = None) -> None:
    """The loop both adapter trainers share: optimiser steps `start + 1` … `steps` over `loader` (again and again),
    gradient values clipped at `clip`; `log(step, train losses)` every `eval_every` steps and at the end.

    A step's train loss is its mean over all processes (every process runs this loop, so the
    reduce is collective). `checkpoint(step, losses not yet logged)` runs every `checkpoint_every`
    steps before the last. A run resumed at `start` sees the batches an uninterrupted one would:
    it replays the shuffles of the epochs already done, then skips the batches of this one already seen.
    """
    losses = list(losses)
    step = start
    epochs_done, seen = divmod(start, len(loader))
    for _ in range(epochs_done):  # each epoch draws its shuffle from the loader's generator: draw them again
        for _ in loader:
            pass
    while step < steps:
        for batch in accelerator.skip_first_batches(loader, seen) if seen else loader:
            loss = batch_loss(batch)
            accelerator.backward(loss)
            accelerator.clip_grad_value_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(accelerator.reduce(loss.detach(), "mean").item())
            step += 1
            bar.update(1)
            if step % eval_every == 0 or step == steps:
                log(step, losses)
                losses = []
                bar.set_postfix(top1=f"{history[-1]['top1']:.3f}", acceptance=f"{history[-1]['acceptance']:.3f}")
            if step == steps:
                return
            if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0:
                checkpoint(step, losses)
        seen = 0


def make_accelerator() -> Accelerator:
    """The Accelerator both adapter trainers use, refusing processes it did not join.

    Its schedule counts optimiser steps (one global batch each): Accelerate would otherwise step
    it once per process per step, as if each process's batch were a step of its own.
    """
    accelerator = Accelerator(step_scheduler_with_optimizer=False)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:  # e.g. torchrun on CPUs without ACCELERATE_USE_CPU=1
        raise ValueError(f"{launched} processes were launched but Accelerate joins {accelerator.num_processes}: "
                         "each would train alone (on CPUs, launch with ACCELERATE_USE_CPU=1)")
    return accelerator


def process_share(accelerator: Accelerator, positions: int) -> float:
    """This process's weight for its mean loss over `positions` positions: its share of all processes' positions.

    DDP averages the processes' gradients; weighing each process's mean by this makes that average
    the mean over the global batch (a factor 1 on one process).
    """
    if accelerator.num_processes == 1:
        return 1.0
    local = torch.tensor(float(positions), device=accelerator.device)
    return positions * accelerator.num_processes / accelerator.reduce(local, "sum").item()


def train_adapter(
    target: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    corpus: Sequence[Example | str],
    exit_layer: int,
    steps: int = 300,
    batch_size: int = 8,
    lr: float = 1e-3,
    warmup: int = 30,
    seed: int = 0,
    held_out: float | int = 0.1,
    progress: bool = True,
    adapter: KangarooAdapter | None = None,
    eval_every: int = 50,
    max_length: int = 512,
    clip: float = 0.5,
    weight_decay: float = 0.0,
    callback: Callable[[dict], None] | None = None,
    draft_vocab_size: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> tuple[KangarooAdapter, list[dict]]:
    """Train a Kangaroo adapter on the frozen target's own next-token distributions.

    Loss: -Σ p_target log p_draft on the reply tokens, where the draft is the target's first
    `exit_layer` layers (frozen) -> adapter -> the target's LM head (frozen). AdamW (0.9, 0.95),
    linear warm-up then cosine decay, gradient values clipped at `clip` (as the official code),
    all through Hugging Face Accelerate so that `accelerate launch` runs it on several devices.
    `held_out` is a fraction or a count of examples. Every `eval_every` steps (and at the start
    and the end) a record {step, train_loss, held_out_loss, top1, acceptance, lr} is appended to
    the history and passed to `callback` (e.g. a live plot). With `draft_vocab_size`, the
    trained adapter drafts only over that many of the training replies' most frequent tokens
    (see `set_draft_vocab`); without, it keeps the draft vocabulary it had (none for a fresh one).

    Under `accelerate launch` each process trains on its share of every batch (`batch_size`
    examples each) and the loss is the mean over all the processes' reply positions, so N
    processes train as one with N × `batch_size` would; `train_loss` is the mean over processes.
    With `checkpoint_every`, the state is saved to the folder `checkpoint` every that many steps;
    `resume=True` continues from it, after checking that the run's configuration is the same.
    """
    check_target(target)
    check_exit_layer(target, exit_layer)
    check_positive("steps", steps)
    check_positive("batch_size", batch_size)
    check_positive("eval_every", eval_every)
    if draft_vocab_size is not None:
        check_positive("draft_vocab_size", draft_vocab_size)
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {checkpoint_every!r}")
    if (checkpoint_every or resume) and checkpoint is None:
        raise ValueError("checkpoint_every and resume need a checkpoint folder")
    if adapter is not None:
        adapter.check_matches(target)
        if adapter.exit_layer != exit_layer:
            raise ValueError(f"adapter exits after layer {adapter.exit_layer}, not {exit_layer}")
    data = encode_corpus(tokenizer, corpus, max_length)
    if len(data) < 2:
        raise ValueError(
            f"the corpus has {len(data)} usable examples: at least 2 are needed (one to train on, one held out)"
        )
    train_data, eval_data = _split(data, held_out, seed)
    pad_id = _pad_id(tokenizer)

    set_seed(seed)
    accelerator = make_accelerator()
    target.to(accelerator.device)
    # What a resumed run must share with the one that saved the checkpoint.
    run = dict(steps=steps, batch_size=batch_size, num_processes=accelerator.num_processes, lr=lr, warmup=warmup,
               seed=seed, held_out=held_out, eval_every=eval_every, max_length=max_length, clip=clip,
               weight_decay=weight_decay, exit_layer=exit_layer, draft_vocab_size=draft_vocab_size,
               target=digest([torch.tensor(target_fingerprint(target))]),
               data=digest(tensor for example in data for tensor in example),
               init=None if adapter is None else digest(adapter.state_dict().values()))
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    resumed = read_checkpoint(checkpoint, run) if resume else dict(step=0, history=[], losses=[])
    adapter = adapter if adapter is not None else KangarooAdapter.from_target(target, exit_layer)
    adapter.to(accelerator.device).train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps, warmup))
    loader = torch.utils.data.DataLoader(
        train_data,
        batch_size=batch_size,
        shuffle=True,
        drop_last=False,
        collate_fn=lambda b: _collate(b, pad_id),
        generator=torch.Generator().manual_seed(seed),
    )
    # Accelerate shards the loader's batches across processes and wraps the adapter in DDP (gradients averaged).
    model, optimizer, loader, scheduler = accelerator.prepare(adapter, optimizer, loader, scheduler)
    if resume:
        accelerator.load_state(str(checkpoint))

    # Freeze the target for the run: gradients flow *through* its head into the adapter only.
    frozen = [(p, p.requires_grad) for p in target.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    history: list[dict] = list(resumed["history"])

    def log(step: int, losses: list[float]) -> None:
        adapter.eval()
        record = dict(
            step=step,
            train_loss=sum(losses) / len(losses) if losses else None,
            **_evaluate(target, adapter, exit_layer, eval_data, batch_size, pad_id),
            lr=scheduler.get_last_lr()[0],
        )
        adapter.train()
        history.append(record)
        if callback is not None:
            callback(record)

    def batch_loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        draft_logits, target_logits = _draft_and_target_logits(target, model, exit_layer, *batch)
        return _soft_cross_entropy(draft_logits, target_logits) * process_share(accelerator, len(target_logits))

    def save(step: int, losses: list[float]) -> None:
        save_checkpoint(accelerator, checkpoint, dict(config=run, step=step, history=history, losses=losses))

    try:
        if not resume:
            log(0, [])
        bar = tqdm(
            total=steps,
            initial=resumed["step"],
            desc=f"adapter (exit {exit_layer})",
            unit="step",
            disable=not progress or not accelerator.is_local_main_process,
        )
        optimise(model, loader, batch_loss, steps, accelerator, optimizer, scheduler, clip, eval_every, log, history,
                 bar, start=resumed["step"], losses=resumed["losses"], checkpoint_every=checkpoint_every,
                 checkpoint=save)
        bar.close()
    finally:
        for p, requires_grad in frozen:
            p.requires_grad_(requires_grad)
    adapter = accelerator.unwrap_model(model)
    adapter.eval()
    if draft_vocab_size is not None:
        adapter.set_draft_vocab(draft_vocab_of(train_data, draft_vocab_size, tokenizer.eos_token_id))
    return adapter, history
