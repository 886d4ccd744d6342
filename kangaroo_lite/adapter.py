"""Kangaroo's adapter: the small trained block that turns a shallow sub-network into a drafter.

The self-draft model is the target's first `exit_layer` decoder layers (shared, frozen), then
this adapter, then the target's LM head (shared, frozen). The adapter is one decoder block of
the target's own architecture with the MLP removed: input RMSNorm, self-attention with RoPE,
residual add, and a final RMSNorm (Kangaroo, arXiv 2404.18911).
"""

from __future__ import annotations

import json
import math
import random
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_causal_mask

from .checks import check_positive
from .corpus import ASSISTANT, Example, format_example
from .draft_vocab import draft_vocab_of, spread_to_vocab

# Families whose decoder is embed -> layers -> norm -> head with no extra scaling, so that
# running the layers one by one (as Kangaroo does) reproduces the model's own forward pass.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "adapter_config.json"
DRAFT_VOCAB = "draft_vocab"  # the saved tensor of draft token ids, when the adapter has a draft vocabulary


def check_target(target: PreTrainedModel) -> None:
    """Raise `ValueError` unless `target` is a decoder family Kangaroo can split into layers."""
    model_type = getattr(target.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"Kangaroo supports {', '.join(SUPPORTED_MODEL_TYPES)} models, got {model_type!r}")


def check_exit_layer(target: PreTrainedModel, exit_layer: int) -> None:
    """Raise `ValueError` unless 1 <= exit_layer <= num_layers - 1 (some layers must stay deep)."""
    layers = target.config.num_hidden_layers
    if isinstance(exit_layer, bool) or not isinstance(exit_layer, int) or not 1 <= exit_layer <= layers - 1:
        raise ValueError(
            f"exit_layer must be an integer in [1, {layers - 1}] for a target with {layers} layers, got {exit_layer!r}"
        )


def target_fingerprint(target: PreTrainedModel, size: int = 64) -> list[float]:
    """`size` weights sampled at fixed places across all the target's tensors: a cheap identity check.

    Values rather than a hash, so that the same checkpoint loaded in float32, float16 or
    bfloat16 still matches (see `fingerprints_match`), while another model does not.
    """
    tensors = [t for _, t in sorted(target.state_dict().items()) if t.is_floating_point() and t.numel()]
    values = []
    for i in range(size):
        flat = tensors[i * len(tensors) // size].detach().reshape(-1)
        values.append(float(flat[(i * 2654435761) % flat.numel()]))  # Knuth's multiplicative hash
    return [float(f"{v:.6g}") for v in values]


def fingerprints_match(saved: list[float], current: list[float], rtol: float = 2e-2) -> bool:
    """True when two fingerprints agree within bfloat16 rounding (relative error 2**-8)."""
    return len(saved) == len(current) and all(
        abs(a - b) <= rtol * max(abs(a), abs(b)) + 1e-6 for a, b in zip(saved, current, strict=True)
    )


def _target_summary(target: PreTrainedModel) -> dict:
    config = target.config
    return dict(
        model_type=config.model_type,
        num_hidden_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        vocab_size=config.vocab_size,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=getattr(config, "num_key_value_heads", config.num_attention_heads),
    )


class KangarooAdapter(nn.Module):
    """Input RMSNorm -> self-attention (RoPE) -> residual -> final RMSNorm; no MLP, no LM head."""

    def __init__(self, target: PreTrainedModel, exit_layer: int):
        super().__init__()
        check_target(target)
        check_exit_layer(target, exit_layer)
        config = target.config
        self.config = config  # the target's: the attention class reads its heads, RoPE and backend
        self.exit_layer = exit_layer
        self.target_summary = _target_summary(target)
        self.target_fingerprint: list[float] | None = None  # set by from_target / from_pretrained
        norm_class = type(target.model.norm)
        self.input_layernorm = norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = type(target.model.layers[exit_layer].self_attn)(config, layer_idx=0)
        self.norm = norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.draft_vocab: torch.Tensor | None  # token ids the self-draft may propose; None: all of them
        # Moves with the adapter; saved by save_pretrained, outside the state dict, so that adapters
        # with and without a draft vocabulary exchange weights freely.
        self.register_buffer(DRAFT_VOCAB, None, persistent=False)
        self._head_rows: tuple | None = None  # (weakref to the head's weight, vocab, its rows, their bias)

    def set_draft_vocab(self, token_ids: Sequence[int] | torch.Tensor | None) -> None:
        """Let the self-draft propose only these token ids (see `draft_vocab`); None: the whole vocabulary."""
        if token_ids is None:
            self.draft_vocab = None
            return
        ids = torch.as_tensor(token_ids)
        vocab_size = self.target_summary["vocab_size"]
        if ids.dim() != 1 or not len(ids) or ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(f"a draft vocabulary is a non-empty 1-D list of token ids, got shape {tuple(ids.shape)} "
                             f"of {ids.dtype}")
        if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
            raise ValueError(f"draft vocabulary ids must be in [0, {vocab_size - 1}] (the target's vocabulary)")
        if len(ids.unique()) != len(ids):
            raise ValueError("the draft vocabulary repeats token ids")
        self.draft_vocab = ids.sort().values.to(device=self.norm.weight.device, dtype=torch.long)

    def draft_head(self, head: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias rows of the target's LM head that the self-draft scores.

        All of them without a draft vocabulary; otherwise the vocabulary's rows, gathered once per
        head (the target is frozen) and kept, rather than copied for every generation.
        """
        if self.draft_vocab is None:
            return head.weight, head.bias
        cached = self._head_rows
        if cached is None or cached[0]() is not head.weight or cached[1] is not self.draft_vocab:
            bias = None if head.bias is None else head.bias.detach()[self.draft_vocab]
            cached = (weakref.ref(head.weight), self.draft_vocab, head.weight.detach()[self.draft_vocab], bias)
            self._head_rows = cached
        return cached[2], cached[3]

    @classmethod
    def from_target(cls, target: PreTrainedModel, exit_layer: int, init: str = "copy") -> KangarooAdapter:
        """A fresh adapter for `target` exiting after `exit_layer` layers.

        `init="copy"` starts from the target's own layer `exit_layer` attention and norm (the
        block that reads the same hidden states next) and the target's final norm, so even an
        untrained adapter drafts reasonably; `init="random"` uses the target's initializer range.
        """
        if init not in ("copy", "random"):
            raise ValueError(f"init must be 'copy' or 'random', got {init!r}")
        adapter = cls(target, exit_layer)
        if init == "copy":
            layer = target.model.layers[exit_layer]
            adapter.input_layernorm.load_state_dict(layer.input_layernorm.state_dict())
            adapter.self_attn.load_state_dict(layer.self_attn.state_dict())
            adapter.norm.load_state_dict(target.model.norm.state_dict())
        else:
            std = getattr(target.config, "initializer_range", 0.02)
            for module in adapter.self_attn.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        adapter.target_fingerprint = target_fingerprint(target)
        return adapter.to(device=target.device, dtype=target.dtype).eval()

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_values: DynamicCache | None = None,
    ) -> torch.Tensor:
        """Map exited hidden states (b, n, h) to normalised states ready for the target's LM head."""
        attended, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            past_key_values=past_key_values,
        )
        return self.norm(hidden_states + attended)

    def causal_mask(
        self, hidden_states: torch.Tensor, position_ids: torch.Tensor, past_key_values: DynamicCache | None = None
    ) -> torch.Tensor | None:
        """The causal mask for `forward` in the target's attention backend (None when implicit)."""
        return create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=None,
            past_key_values=past_key_values,
            position_ids=position_ids,
        )

    def num_parameters(self) -> int:
        """Number of trainable weights (the shared LM head is not counted)."""
        return sum(p.numel() for p in self.parameters())

    def fraction_of(self, target: PreTrainedModel) -> float:
        """The adapter's size as a fraction of the target's parameter count."""
        return self.num_parameters() / sum(p.numel() for p in target.parameters())

    def check_matches(self, target: PreTrainedModel) -> None:
        """Cheap check (shapes, not weights) that this adapter was built for `target`."""
        check_exit_layer(target, self.exit_layer)
        summary = _target_summary(target)
        diff = {k: (v, summary[k]) for k, v in self.target_summary.items() if summary[k] != v}
        if diff:
            detail = ", ".join(f"{k}: adapter {a!r} vs target {t!r}" for k, (a, t) in diff.items())
            raise ValueError(f"this adapter was built for another target ({detail})")
        weight = self.input_layernorm.weight
        if weight.device != target.device or weight.dtype != target.dtype:
            raise ValueError(
                f"adapter is on {weight.device}/{weight.dtype} but the target on "
                f"{target.device}/{target.dtype}: move it with adapter.to(...)"
            )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `model.safetensors` (with the draft vocabulary, if any) and `adapter_config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.draft_vocab is not None:
            tensors[DRAFT_VOCAB] = self.draft_vocab.cpu()
        save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt"})
        config = dict(
            exit_layer=self.exit_layer,
            target=self.target_summary,
            target_fingerprint=self.target_fingerprint,
            num_parameters=self.num_parameters(),
            draft_vocab_size=None if self.draft_vocab is None else len(self.draft_vocab),
        )
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, target: PreTrainedModel) -> KangarooAdapter:
        """Load an adapter saved by `save_pretrained`; `ValueError` if it belongs to another target."""
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} has no {name}: not a saved Kangaroo adapter")
        config = json.loads((directory / CONFIG_NAME).read_text())
        check_target(target)
        summary = _target_summary(target)
        diff = {k: (v, summary.get(k)) for k, v in config["target"].items() if summary.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: saved {a!r} vs given {t!r}" for k, (a, t) in diff.items())
            raise ValueError(f"the adapter in {directory} was trained for another target ({detail})")
        fingerprint = target_fingerprint(target)
        saved = config.get("target_fingerprint")
        if saved is not None and not fingerprints_match(saved, fingerprint):
            raise ValueError(
                f"the adapter in {directory} was trained for another target: the same shapes, "
                "but different weights (their fingerprints differ)"
            )
        adapter = cls(target, config["exit_layer"])
        tensors = load_file(directory / WEIGHTS_NAME)
        vocab = tensors.pop(DRAFT_VOCAB, None)
        adapter.load_state_dict(tensors)
        adapter.set_draft_vocab(vocab)
        adapter.target_fingerprint = fingerprint
        return adapter.to(device=target.device, dtype=target.dtype).eval()


# ---------------------------------------------------------------- training


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
            past_key_values=None,
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
    """
    check_target(target)
    check_exit_layer(target, exit_layer)
    check_positive("steps", steps)
    check_positive("batch_size", batch_size)
    check_positive("eval_every", eval_every)
    if draft_vocab_size is not None:
        check_positive("draft_vocab_size", draft_vocab_size)
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
    accelerator = Accelerator()
    target.to(accelerator.device)
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
    model, optimizer, loader, scheduler = accelerator.prepare(adapter, optimizer, loader, scheduler)

    # Freeze the target for the run: gradients flow *through* its head into the adapter only.
    frozen = [(p, p.requires_grad) for p in target.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    history: list[dict] = []

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

    try:
        log(0, [])
        bar = tqdm(
            total=steps,
            desc=f"adapter (exit {exit_layer})",
            unit="step",
            disable=not progress or not accelerator.is_local_main_process,
        )
        losses: list[float] = []
        step = 0
        while step < steps:
            for ids, mask in loader:
                draft_logits, target_logits = _draft_and_target_logits(target, model, exit_layer, ids, mask)
                loss = _soft_cross_entropy(draft_logits, target_logits)
                accelerator.backward(loss)
                accelerator.clip_grad_value_(model.parameters(), clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                step += 1
                bar.update(1)
                if step % eval_every == 0 or step == steps:
                    log(step, losses)
                    losses = []
                    last = history[-1]
                    bar.set_postfix(loss=f"{last['held_out_loss']:.3f}", acceptance=f"{last['acceptance']:.3f}")
                if step == steps:
                    break
        bar.close()
    finally:
        for p, requires_grad in frozen:
            p.requires_grad_(requires_grad)
    adapter = accelerator.unwrap_model(model)
    adapter.eval()
    if draft_vocab_size is not None:
        adapter.set_draft_vocab(draft_vocab_of(train_data, draft_vocab_size, tokenizer.eos_token_id))
    return adapter, history
