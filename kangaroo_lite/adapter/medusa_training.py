"""Training Medusa-1 heads from precomputed features: the last layer's states against the target at each offset.

The feature folder must hold the final, normed hidden state (feature layer = the number of
layers; `features.check_feature_layer`). Head k, reading the state at position t, learns the
target's next-token distribution at position t + k (its top-k, restricted to the heads' draft
vocabulary), where that position predicts a reply token: self-distillation, as Medusa-2 recommends
when the training data is not the target's own. The heads' losses are weighted 0.8^(k-1), as the
Medusa paper does, and the target stays frozen (Medusa-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..core.checks import check_positive
from .distill import DraftVocabHead, held_out_split, soft_label_loss
from .features import FeatureDataset, FeatureExample, FeatureShards
from .medusa import MedusaHeads
from .training import _lr_factor, make_accelerator, optimise, process_share

HEAD_DECAY = 0.8  # the weight of head k's loss is HEAD_DECAY ** (k - 1)


def _offset_rows(example: FeatureExample, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions t whose position t + offset predicts a reply token, and that position's row of top-k targets."""
    row_of = torch.cumsum(example.predicts_reply.long(), 0) - 1  # a masked position's row in topk_*
    later = torch.arange(offset, len(example.ids))
    keep = example.predicts_reply[later]
    return later[keep] - offset, row_of[later[keep]]


def collate_offsets(batch: Sequence[FeatureExample], num_heads: int) -> tuple[torch.Tensor, list[tuple]]:
    """The final states of a batch (positions, h) and, per head k, (state indices, top-k ids, top-k logits)."""
    states, per_head, base = [], [[] for _ in range(num_heads)], 0
    for example in batch:
        states.append(example.exited.float())
        for k in range(num_heads):
            positions, rows = _offset_rows(example, k + 1)
            per_head[k].append((positions + base, example.topk_ids[rows], example.topk_logits[rows].float()))
        base += len(example.ids)
    heads = [tuple(torch.cat(parts) for parts in zip(*head, strict=True)) for head in per_head]
    return torch.cat(states), heads


def _head_targets(heads: MedusaHeads, target: PreTrainedModel) -> DraftVocabHead:
    """The heads' vocabulary as the adapter's training reads it: each token's column among the heads' rows."""
    vocab = heads.draft_vocab if heads.draft_vocab is not None else torch.arange(target.config.vocab_size)
    return DraftVocabHead(target, vocab.cpu())


def _head_losses(heads: torch.nn.Module, target: PreTrainedModel, index: DraftVocabHead, states: torch.Tensor,
                 per_head: list[tuple]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per head: log q (m, rows), the target's top-k p (m, k), their columns and the target's top ids.

    The heads run once (through `heads`, which may be Accelerate's wrapper) over the states any head needs.
    """
    needed = torch.unique(torch.cat([positions for positions, _, _ in per_head]))
    logits = heads(states[needed], target)  # (m, K, rows)
    out = []
    for k, (positions, topk_ids, topk_logits) in enumerate(per_head):
        p, columns = index.targets(topk_ids, topk_logits)
        rows = logits[torch.searchsorted(needed, positions), k]
        out.append((torch.log_softmax(rows.float(), -1), p, columns, topk_ids))
    return out


@torch.no_grad()
def evaluate_heads(heads: MedusaHeads, target: PreTrainedModel, examples: Sequence[FeatureExample],
                   batch_size: int = 8) -> dict:
    """Per head (lists, head 1 first): top-1 agreement with the target at its offset, Σ min(p, q) over the target's
    top-k and the loss; `top1` and `acceptance` are head 1's, `held_out_loss` the heads' mean."""
    index = _head_targets(heads, target)
    sums = torch.zeros(heads.num_heads, 4)  # top-1 hits, Σ min(p, q), loss × positions, positions
    for start in range(0, len(examples), batch_size):
        states, per_head = collate_offsets(examples[start : start + batch_size], heads.num_heads)
        for k, (log_q, p, columns, topk_ids) in enumerate(_head_losses(heads, target, index, states, per_head)):
            q = log_q.exp().gather(-1, columns.clamp_min(0)) * (columns >= 0)
            sums[k] += torch.tensor([(index.vocab[log_q.argmax(-1)] == topk_ids[:, 0]).sum().item(),
                                     torch.minimum(p, q).sum().item(),
                                     soft_label_loss(log_q, p, columns).item() * len(p), len(p)])
    positions = sums[:, 3].clamp_min(1)
    top1, acceptance, loss = (sums[:, 0] / positions).tolist(), (sums[:, 1] / positions).tolist(), \
        (sums[:, 2] / positions).tolist()
    return {"top1": top1[0], "acceptance": acceptance[0], "held_out_loss": sum(loss) / len(loss),
            "top1_by_head": top1, "acceptance_by_head": acceptance, "loss_by_head": loss,
            "positions": int(sums[0, 3])}


def train_medusa_heads(
    target: PreTrainedModel,
    features: FeatureShards,
    heads: MedusaHeads,
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-3,
    warmup: int = 50,
    seed: int = 0,
    held_out: int = 64,
    eval_every: int = 100,
    clip: float = 0.5,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> tuple[MedusaHeads, list[dict]]:
    """Train `heads` (fresh: `MedusaHeads.from_target`) on final-layer features; returns them and their history.

    AdamW (0.9, 0.95), linear warm-up then cosine decay, gradient values clipped at `clip`, through
    Hugging Face Accelerate (as the adapter's training). `held_out` examples (drawn with `seed`) are
    evaluated every `eval_every` steps: records {step, train_loss, lr} and `evaluate_heads`'s figures.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("held_out", held_out)):
        check_positive(name, value)
    final = target.config.num_hidden_layers
    if features.exit_layer != final:
        raise ValueError(f"Medusa heads read the final hidden state: features of layer {final} are needed, "
                         f"got layer {features.exit_layer}")
    heads.check_matches(target)
    dataset = FeatureDataset(features)
    eval_data, train_indices = held_out_split(dataset, held_out, seed)
    set_seed(seed)
    accelerator = make_accelerator()
    index = _head_targets(heads, target)
    weights = [HEAD_DECAY**k for k in range(heads.num_heads)]
    heads.train()
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps, warmup))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, train_indices), batch_size=batch_size, shuffle=True,
        collate_fn=lambda batch: collate_offsets(batch, heads.num_heads),
        generator=torch.Generator().manual_seed(seed))
    model, optimizer, loader, scheduler = accelerator.prepare(heads, optimizer, loader, scheduler)
    history: list[dict] = []

    def log(step: int, losses: list[float]) -> None:
        heads.eval()
        record = {"step": step, "train_loss": sum(losses) / len(losses) if losses else None,
                  **evaluate_heads(heads, target, eval_data, batch_size), "lr": scheduler.get_last_lr()[0]}
        heads.train()
        history.append(record)
        if callback is not None:
            callback(record)

    def batch_loss(batch: tuple[torch.Tensor, list[tuple]]) -> torch.Tensor:
        states, per_head = batch
        parts = _head_losses(model, target, index, states, per_head)
        loss = sum(w * soft_label_loss(log_q, p, columns) for w, (log_q, p, columns, _) in zip(weights, parts,
                                                                                              strict=True))
        return loss * process_share(accelerator, len(parts[0][1]))

    log(0, [])
    bar = tqdm(total=steps, desc=f"Medusa heads ({heads.num_heads})", unit="step",
               disable=not progress or not accelerator.is_local_main_process)
    optimise(model, loader, batch_loss, steps, accelerator, optimizer, scheduler, clip, eval_every, log, history, bar)
    bar.close()
    return accelerator.unwrap_model(model).eval(), history
