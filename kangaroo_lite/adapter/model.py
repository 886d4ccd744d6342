"""Kangaroo's adapter: the small trained block that turns a shallow sub-network into a drafter.

The self-draft model is the target's first `exit_layer` decoder layers (shared, frozen), then
this adapter, then the target's LM head (shared, frozen). The adapter is one decoder block of
the target's own architecture with the MLP removed: input RMSNorm, self-attention with RoPE,
residual add, and a final RMSNorm (Kangaroo, arXiv 2404.18911). With `mlp=True` it keeps the
block's MLP too (post-attention RMSNorm, MLP, residual add): a whole decoder layer (for SmolLM2
3.5M weights instead of 0.9M), for a drafter that has more to learn than one attention can hold.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.masking_utils import create_causal_mask

from ..models.cpu_kernels import linear_like

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


def target_summary_of(target: PreTrainedModel) -> dict:
    """The target's shape (type, layers, width, heads, vocabulary): what an adapter must match."""
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
    """Input RMSNorm -> self-attention (RoPE) -> residual [-> RMSNorm -> MLP -> residual] -> final RMSNorm.

    No LM head: the self-draft uses the target's. The bracketed MLP only with `mlp=True`.
    """

    def __init__(self, target: PreTrainedModel, exit_layer: int, mlp: bool = False):
        super().__init__()
        check_target(target)
        check_exit_layer(target, exit_layer)
        config = target.config
        self.config = config  # the target's: the attention class reads its heads, RoPE and backend
        self.exit_layer = exit_layer
        self.target_summary = target_summary_of(target)
        self.target_fingerprint: list[float] | None = None  # set by from_target / from_pretrained
        norm_class = type(target.model.norm)
        self.input_layernorm = norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = type(target.model.layers[exit_layer].self_attn)(config, layer_idx=0)
        self.has_mlp = mlp
        if mlp:
            self.post_attention_layernorm = norm_class(config.hidden_size, eps=config.rms_norm_eps)
            self.mlp = type(target.model.layers[exit_layer].mlp)(config)
        self.norm = norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.draft_vocab: torch.Tensor | None  # token ids the self-draft may propose; None: all of them
        # Moves with the adapter; saved by save_pretrained, outside the state dict, so that adapters
        # with and without a draft vocabulary exchange weights freely.
        self.register_buffer(DRAFT_VOCAB, None, persistent=False)
        self._head_rows: tuple | None = None  # (weakref to the head's weight, vocab, the layer of its rows)

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

    def draft_head(self, head: nn.Linear) -> nn.Linear:
        """The linear layer scoring the self-draft's tokens: the target's LM head `head` itself, or, with a draft
        vocabulary, a layer of that vocabulary's rows of it (with `head`'s kernels: `linear_like`), gathered once per
        head (the target is frozen) and kept, rather than copied for every generation."""
        if self.draft_vocab is None:
            return head
        cached = self._head_rows
        if cached is None or cached[0]() is not head.weight or cached[1] is not self.draft_vocab:
            bias = None if head.bias is None else head.bias.detach()[self.draft_vocab]
            rows = linear_like(head, head.weight.detach()[self.draft_vocab], bias)
            cached = (weakref.ref(head.weight), self.draft_vocab, rows)
            self._head_rows = cached
        return cached[2]

    @classmethod
    def from_target(cls, target: PreTrainedModel, exit_layer: int, init: str = "copy",
                    mlp: bool = False) -> KangarooAdapter:
        """A fresh adapter for `target` exiting after `exit_layer` layers (with an MLP if `mlp`).

        `init="copy"` starts from the target's own layer `exit_layer` attention, norms (and MLP)
        — the block that reads the same hidden states next — and the target's final norm, so even
        an untrained adapter drafts reasonably; `init="random"` uses the target's initializer range.
        """
        if init not in ("copy", "random"):
            raise ValueError(f"init must be 'copy' or 'random', got {init!r}")
        adapter = cls(target, exit_layer, mlp=mlp)
        if init == "copy":
            layer = target.model.layers[exit_layer]
            parts = ["input_layernorm", "self_attn", *(["post_attention_layernorm", "mlp"] if mlp else [])]
            for name in parts:
                getattr(adapter, name).load_state_dict(getattr(layer, name).state_dict())
            adapter.norm.load_state_dict(target.model.norm.state_dict())
        else:
            std = getattr(target.config, "initializer_range", 0.02)
            for module in [*adapter.self_attn.modules(), *(adapter.mlp.modules() if mlp else [])]:
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
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        """Map exited hidden states (b, n, h) to normalised states ready for the target's LM head."""
        attended, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
        )
        hidden_states = hidden_states + attended
        if self.has_mlp:
            hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return self.norm(hidden_states)

    def causal_mask(
        self, hidden_states: torch.Tensor, position_ids: torch.Tensor, cache: DynamicCache | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The causal mask for `forward` in the target's attention backend (None when implicit);
        a 2-D `attention_mask` (batch, cached + new) also hides padding."""
        return create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=attention_mask,
            cache=cache,
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
        summary = target_summary_of(target)
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
            mlp=self.has_mlp,
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
        summary = target_summary_of(target)
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
        adapter = cls(target, config["exit_layer"], mlp=config.get("mlp", False))
        tensors = load_file(directory / WEIGHTS_NAME)
        vocab = tensors.pop(DRAFT_VOCAB, None)
        adapter.load_state_dict(tensors)
        adapter.set_draft_vocab(vocab)
        adapter.target_fingerprint = fingerprint
        return adapter.to(device=target.device, dtype=target.dtype).eval()
