"""Training a Kangaroo adapter from precomputed features: Kangaroo's soft-label recipe without the target's cost.

Each step reads exited hidden states and the target's top-k next-token logits from a feature
folder (`features.py`), runs only the adapter and the draft vocabulary's rows of the shared LM
head, and minimises -Σ p_target log q_draft over the reply positions, with p the target's
top-k distribution restricted to the draft vocabulary (what the self-draft can propose).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.masking_utils import create_causal_mask

from ..core.checks import check_positive
from .features import FeatureExample, FeatureShards
from .model import KangarooAdapter
from .training import _lr_factor, optimise, process_share


def _collate(batch: Sequence[FeatureExample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded exited states (b, n, h) and reply mask (b, n); top-k ids and logits of the masked positions."""
    length = max(len(e.ids) for e in batch)
    hidden = batch[0].exited.shape[-1]
    exited = torch.zeros((len(batch), length, hidden), dtype=torch.float32)
    mask = torch.zeros((len(batch), length), dtype=torch.bool)
    for row, example in enumerate(batch):
        exited[row, : len(example.ids)] = example.exited.float()
        mask[row, : len(example.ids)] = example.predicts_reply
    topk_ids = torch.cat([e.topk_ids for e in batch])
    topk_logits = torch.cat([e.topk_logits for e in batch]).float()
    return exited, mask, topk_ids, topk_logits


def _adapter_states(adapter: torch.nn.Module, target: PreTrainedModel, exited: torch.Tensor) -> torch.Tensor:
    """The adapter's output (b, n, h) over whole sequences of exited states, causally."""
    positions = torch.arange(exited.shape[1], device=exited.device).unsqueeze(0)
    rope = target.model.rotary_emb(exited, positions)
    causal = create_causal_mask(
        config=target.config, inputs_embeds=exited, attention_mask=None, cache=None, position_ids=positions
    )
    return adapter(exited, rope, attention_mask=causal)


class DraftVocabHead:
    """The rows of the target's LM head that a draft vocabulary scores, and each token's place among them."""

    def __init__(self, target: PreTrainedModel, vocab: torch.Tensor):
        self.vocab = vocab
        self.weight = target.lm_head.weight.detach()[vocab].float()
        self.index = torch.full((target.config.vocab_size,), -1, dtype=torch.long)
        self.index[vocab] = torch.arange(len(vocab))

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """log q over the draft vocabulary (m, |vocab|)."""
        return torch.log_softmax(states.float() @ self.weight.T, -1)

    def targets(self, topk_ids: torch.Tensor, topk_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's top-k probabilities (m, k) and their columns in the draft vocabulary (-1: outside it)."""
        return torch.softmax(topk_logits, -1), self.index[topk_ids]


def soft_label_loss(log_q: torch.Tensor, p: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Mean over positions of -Σ p log q, with p renormalised over the tokens the draft can propose."""
    inside = columns >= 0
    p = p * inside
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    picked = log_q.gather(-1, columns.clamp_min(0))
    return -(p * picked * inside).sum(-1).mean()


@torch.no_grad()
def agreement(
    log_q: torch.Tensor, vocab: torch.Tensor, p: torch.Tensor, columns: torch.Tensor, topk_ids: torch.Tensor
) -> tuple[float, float]:
    """Summed top-1 agreement with the target and Σ min(p, q) over the target's top-k tokens."""
    top1 = (vocab[log_q.argmax(-1)] == topk_ids[:, 0]).sum().item()
    q = log_q.exp().gather(-1, columns.clamp_min(0)) * (columns >= 0)
    return top1, torch.minimum(p, q).sum().item()


@torch.no_grad()
def evaluate_on_features(
    target: PreTrainedModel, adapter: KangarooAdapter | None, examples: Sequence[FeatureExample], batch_size: int = 8
) -> dict:
    """Top-1 agreement and Σ min(p, q) (over the target's top-k) of a self-draft on reply positions.

    With an adapter: over its draft vocabulary, as the decoder drafts. Without (`None`): the
    exited states go straight into the target's final norm and whole LM head, as Hugging Face's
    `assistant_early_exit` drafts.
    """
    vocab = adapter.draft_vocab if adapter is not None and adapter.draft_vocab is not None else None
    vocab = vocab if vocab is not None else torch.arange(target.config.vocab_size)
    head = DraftVocabHead(target, vocab.cpu())
    top1 = acceptance = loss = positions = 0.0
    for start in range(0, len(examples), batch_size):
        exited, mask, topk_ids, topk_logits = _collate(examples[start : start + batch_size])
        states = target.model.norm(exited) if adapter is None else _adapter_states(adapter, target, exited)
        log_q = head.log_probs(states[mask])
        p, columns = head.targets(topk_ids, topk_logits)
        hits, accepted = agreement(log_q, head.vocab, p, columns, topk_ids)
        top1, acceptance, positions = top1 + hits, acceptance + accepted, positions + len(p)
        loss += soft_label_loss(log_q, p, columns).item() * len(p)
    positions = max(positions, 1)
    return {"top1": top1 / positions, "acceptance": acceptance / positions, "held_out_loss": loss / positions,
            "positions": int(positions)}


def train_adapter_on_features(
    target: PreTrainedModel,
    features: FeatureShards,
    draft_vocab: Sequence[int],
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 5e-4,
    warmup: int = 50,
    seed: int = 0,
    held_out: int = 64,
    eval_every: int = 100,
    clip: float = 0.5,
    adapter: KangarooAdapter | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> tuple[KangarooAdapter, list[dict]]:
    """Train (or continue) an adapter at the features' exit layer; returns it with its draft vocabulary and history.

    AdamW (0.9, 0.95), linear warm-up then cosine decay, gradient values clipped at `clip`, through
    Hugging Face Accelerate. `held_out` examples (drawn with `seed`) are kept out of training and
    evaluated every `eval_every` steps; each record {step, train_loss, held_out_loss, top1,
    acceptance, lr} goes to the history and to `callback`.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("held_out", held_out)):
        check_positive(name, value)
    examples = [e for e in features.examples() if e.predicts_reply.any()]
    if len(examples) <= held_out:
        raise ValueError(f"{len(examples)} examples with reply tokens: more than held_out={held_out} are needed")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    eval_data = [examples[i] for i in order[:held_out]]
    train_data = [examples[i] for i in order[held_out:]]

    set_seed(seed)
    accelerator = Accelerator(step_scheduler_with_optimizer=False)  # the schedule counts global steps
    adapter = adapter if adapter is not None else KangarooAdapter.from_target(target, features.exit_layer)
    if adapter.exit_layer != features.exit_layer:
        raise ValueError(f"adapter exits after layer {adapter.exit_layer}, the features after {features.exit_layer}")
    adapter.set_draft_vocab(draft_vocab)
    head = DraftVocabHead(target, adapter.draft_vocab.cpu())
    adapter.train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps, warmup))
    loader = torch.utils.data.DataLoader(train_data, batch_size=batch_size, shuffle=True, collate_fn=_collate,
                                         generator=torch.Generator().manual_seed(seed))
    model, optimizer, loader, scheduler = accelerator.prepare(adapter, optimizer, loader, scheduler)
    history: list[dict] = []

    def log(step: int, losses: list[float]) -> None:
        adapter.eval()
        record = {"step": step, "train_loss": sum(losses) / len(losses) if losses else None,
                  **evaluate_on_features(target, adapter, eval_data, batch_size), "lr": scheduler.get_last_lr()[0]}
        adapter.train()
        history.append(record)
        if callback is not None:
            callback(record)

    log(0, [])
    bar = tqdm(total=steps, desc=f"adapter (exit {features.exit_layer})", unit="step",
               disable=not progress or not accelerator.is_local_main_process)
    def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        exited, mask, topk_ids, topk_logits = batch
        log_q = head.log_probs(_adapter_states(model, target, exited)[mask])
        return soft_label_loss(log_q, *head.targets(topk_ids, topk_logits)) * process_share(accelerator, len(log_q))

    optimise(model, loader, batch_loss, steps, accelerator, optimizer, scheduler, clip, eval_every, log, history, bar)
    bar.close()
    adapter = accelerator.unwrap_model(model).eval()
    return adapter, history
