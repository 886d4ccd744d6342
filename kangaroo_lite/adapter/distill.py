"""Training a Kangaroo adapter from precomputed features: Kangaroo's soft-label recipe without the target's cost.

Each step reads exited hidden states and the target's top-k next-token logits from a feature
folder (`features.py`), runs only the adapter and the draft vocabulary's rows of the shared LM
head, and minimises -Σ p_target log q_draft over the reply positions, with p the target's
top-k distribution restricted to the draft vocabulary (what the self-draft can propose).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.masking_utils import create_causal_mask

from ..core.checks import check_positive
from .checkpoint import digest, read_checkpoint, save_checkpoint
from .features import FeatureDataset, FeatureExample, FeatureShards, target_features
from .model import KangarooAdapter, target_fingerprint
from .training import _lr_factor, make_accelerator, optimise, process_share


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


def held_out_split(dataset: FeatureDataset, held_out: int, seed: int) -> tuple[list[FeatureExample], list[int]]:
    """`held_out` examples drawn with `seed` (loaded, for evaluation) and the indices of the rest (for training)."""
    if len(dataset) <= held_out:
        raise ValueError(f"{len(dataset)} examples with reply tokens: more than held_out={held_out} are needed")
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    return [dataset[i] for i in order[:held_out]], order[held_out:]


def _recomputing_collate(target: PreTrainedModel, exit_layer: int, top_k: int) -> Callable:
    """A collate that runs the target over a batch of (ids, reply mask) for its features: what precomputing saves."""

    def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        parts = target_features(target, list(batch), [exit_layer], top_k)
        return _collate([FeatureExample(ids, mask, exited, top_ids, top_logits) for (ids, mask), exited, top_ids,
                         top_logits in zip(batch, parts[f"exited.{exit_layer}"], parts["topk_ids"],
                                           parts["topk_logits"], strict=True)])

    return collate


class _Tokens(torch.utils.data.Dataset):
    """A feature dataset's examples as (ids, reply mask) only."""

    def __init__(self, features: FeatureDataset, indices: Sequence[int]):
        self.features, self.indices = features, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features.tokens(self.indices[index])


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
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    recompute: bool = False,
) -> tuple[KangarooAdapter, list[dict]]:
    """Train (or continue) an adapter at the features' exit layer; returns it with its draft vocabulary and history.

    AdamW (0.9, 0.95), linear warm-up then cosine decay, gradient values clipped at `clip`, through
    Hugging Face Accelerate. `held_out` examples (drawn with `seed`) are kept out of training and
    evaluated every `eval_every` steps; each record {step, train_loss, held_out_loss, top1,
    acceptance, lr} goes to the history and to `callback`.

    Examples are read from the shards as batches need them (`FeatureDataset`): under `accelerate
    launch` each process reads only its share of every global batch (`batch_size` examples each),
    and N processes train as one with N × `batch_size` would. With `checkpoint_every`, the state is
    saved to the folder `checkpoint`; `resume=True` continues from it after checking the run's
    configuration is the same. `recompute=True` trains on the same batches but runs the target
    over each batch for its features instead of reading them: the cost that precomputing saves.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("held_out", held_out)):
        check_positive(name, value)
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {checkpoint_every!r}")
    if (checkpoint_every or resume) and checkpoint is None:
        raise ValueError("checkpoint_every and resume need a checkpoint folder")
    dataset = FeatureDataset(features)
    eval_data, train_indices = held_out_split(dataset, held_out, seed)

    set_seed(seed)
    accelerator = make_accelerator()
    adapter_init = adapter
    adapter = adapter if adapter is not None else KangarooAdapter.from_target(target, features.exit_layer)
    if adapter.exit_layer != features.exit_layer:
        raise ValueError(f"adapter exits after layer {adapter.exit_layer}, the features after {features.exit_layer}")
    adapter.set_draft_vocab(draft_vocab)
    # What a resumed run must share with the one that saved the checkpoint.
    run = dict(steps=steps, batch_size=batch_size, num_processes=accelerator.num_processes, lr=lr, warmup=warmup,
               seed=seed, held_out=held_out, eval_every=eval_every, clip=clip, exit_layer=features.exit_layer,
               features=features.digest(), draft_vocab=digest([adapter.draft_vocab]),
               target=digest([torch.tensor(target_fingerprint(target))]),
               init=None if adapter_init is None else digest(adapter_init.state_dict().values()))
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    resumed = read_checkpoint(checkpoint, run) if resume else dict(step=0, history=[], losses=[])
    head = DraftVocabHead(target, adapter.draft_vocab.cpu())
    adapter.train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps, warmup))
    if recompute:
        train_data, collate = _Tokens(dataset, train_indices), _recomputing_collate(target, features.exit_layer,
                                                                                     features.top_k)
    else:
        train_data, collate = torch.utils.data.Subset(dataset, train_indices), _collate
    loader = torch.utils.data.DataLoader(train_data, batch_size=batch_size, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    # Accelerate hands each process its share of every global batch and wraps the adapter in DDP.
    model, optimizer, loader, scheduler = accelerator.prepare(adapter, optimizer, loader, scheduler)
    if resume:
        accelerator.load_state(str(checkpoint))
    history: list[dict] = list(resumed["history"])

    def log(step: int, losses: list[float]) -> None:
        adapter.eval()
        record = {"step": step, "train_loss": sum(losses) / len(losses) if losses else None,
                  **evaluate_on_features(target, adapter, eval_data, batch_size), "lr": scheduler.get_last_lr()[0]}
        adapter.train()
        history.append(record)
        if callback is not None:
            callback(record)

    def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        exited, mask, topk_ids, topk_logits = batch
        log_q = head.log_probs(_adapter_states(model, target, exited)[mask])
        return soft_label_loss(log_q, *head.targets(topk_ids, topk_logits)) * process_share(accelerator, len(log_q))

    def save(step: int, losses: list[float]) -> None:
        save_checkpoint(accelerator, checkpoint, dict(config=run, step=step, history=history, losses=losses))

    if not resume:
        log(0, [])
    bar = tqdm(total=steps, initial=resumed["step"], desc=f"adapter (exit {features.exit_layer})", unit="step",
               disable=not progress or not accelerator.is_local_main_process)
    optimise(model, loader, batch_loss, steps, accelerator, optimizer, scheduler, clip, eval_every, log, history, bar,
             start=resumed["step"], losses=resumed["losses"], checkpoint_every=checkpoint_every, checkpoint=save)
    bar.close()
    adapter = accelerator.unwrap_model(model).eval()
    return adapter, history
