"""Medusa-1 heads: extra decoding heads on the target's last hidden state (Cai et al. 2024).

Head k (k = 1 … K) reads the final, normed hidden state at position t, the state from which the
target's own head predicts token t + 1, and predicts token t + 1 + k: one residual block
x + SiLU(W x + b), with W initialised to zero so that an untrained head starts as the target's
own head, followed by its own LM head initialised from the target's. The target stays frozen;
only the heads train (Medusa-1). With `own_lm_head=False` every head shares the target's LM head
(frozen) and only the residual blocks train: K × (h² + h) weights instead of K × (h² + h + V h),
which is what a 49,152-token vocabulary makes practical to ship. Like the Kangaroo adapter, the
heads may propose only a draft vocabulary (`set_draft_vocab`): their LM heads score those rows.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from .model import check_target, fingerprints_match, target_fingerprint, target_summary_of
from .vocab import spread_to_vocab

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "medusa_config.json"
DRAFT_VOCAB = "draft_vocab"


class ResidualBlock(nn.Module):
    """x + SiLU(W x + b), W zero at the start (Medusa's ResBlock)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + nn.functional.silu(self.linear(hidden))


class MedusaHeads(nn.Module):
    """K Medusa-1 heads for `target`: head k predicts the token k places after the target's next one."""

    def __init__(self, target: PreTrainedModel, num_heads: int = 4, own_lm_head: bool = True,
                 draft_vocab: Sequence[int] | torch.Tensor | None = None):
        super().__init__()
        check_target(target)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
        hidden, vocab_size = target.config.hidden_size, target.config.vocab_size
        self.target_summary = target_summary_of(target)
        self.target_fingerprint: list[float] | None = None
        self.own_lm_head = own_lm_head
        self.draft_vocab: torch.Tensor | None = _vocab_ids(draft_vocab, vocab_size)
        rows = vocab_size if self.draft_vocab is None else len(self.draft_vocab)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(num_heads))
        self.lm_heads = nn.ModuleList(nn.Linear(hidden, rows, bias=False) for _ in range(num_heads)) \
            if own_lm_head else None
        self._shared_rows: tuple | None = None  # (weakref to the target head's weight, its draft-vocabulary rows)

    @property
    def num_heads(self) -> int:
        return len(self.blocks)

    @classmethod
    def from_target(cls, target: PreTrainedModel, num_heads: int = 4, own_lm_head: bool = True,
                    draft_vocab: Sequence[int] | torch.Tensor | None = None) -> MedusaHeads:
        """Fresh heads: zero residual blocks, own LM heads (if any) copied from the target's (its draft rows)."""
        heads = cls(target, num_heads, own_lm_head, draft_vocab)
        if heads.lm_heads is not None:
            weight = target.lm_head.weight.detach()
            rows = weight if heads.draft_vocab is None else weight[heads.draft_vocab.to(weight.device)]
            for head in heads.lm_heads:
                head.weight.data.copy_(rows)
        heads.target_fingerprint = target_fingerprint(target)
        return heads.to(device=target.device, dtype=target.dtype).eval()

    def shared_weight(self, target: PreTrainedModel) -> torch.Tensor:
        """The target's LM head rows the heads score (all, or the draft vocabulary's), gathered once."""
        weight = target.lm_head.weight
        if self.draft_vocab is None:
            return weight.detach()
        cached = self._shared_rows
        if cached is None or cached[0]() is not weight:
            cached = (weakref.ref(weight), weight.detach()[self.draft_vocab.to(weight.device)])
            self._shared_rows = cached
        return cached[1]

    def forward(self, hidden: torch.Tensor, target: PreTrainedModel) -> torch.Tensor:
        """Logits (..., K, rows) of every head over its rows (the draft vocabulary, or all) from states (..., h)."""
        shared = None if self.lm_heads is not None else self.shared_weight(target)
        out = []
        for k, block in enumerate(self.blocks):
            state = block(hidden)
            out.append(self.lm_heads[k](state) if self.lm_heads is not None else state @ shared.T)
        return torch.stack(out, dim=-2)

    def vocab_logits(self, hidden: torch.Tensor, target: PreTrainedModel) -> torch.Tensor:
        """Logits (..., K, V) over the whole vocabulary; tokens outside the draft vocabulary get -inf."""
        logits = self(hidden, target)
        if self.draft_vocab is None:
            return logits
        return spread_to_vocab(logits, self.draft_vocab.to(logits.device), self.target_summary["vocab_size"])

    def num_parameters(self) -> int:
        """The weights the heads train (a shared LM head is the target's and not counted)."""
        return sum(p.numel() for p in self.parameters())

    def check_matches(self, target: PreTrainedModel) -> None:
        """Cheap check (shapes, device, dtype) that these heads were built for `target`."""
        summary = target_summary_of(target)
        diff = {k: (v, summary[k]) for k, v in self.target_summary.items() if summary[k] != v}
        if diff:
            detail = ", ".join(f"{k}: heads {a!r} vs target {t!r}" for k, (a, t) in diff.items())
            raise ValueError(f"these Medusa heads were built for another target ({detail})")
        weight = self.blocks[0].linear.weight
        if weight.device != target.device or weight.dtype != target.dtype:
            raise ValueError(f"the heads are on {weight.device}/{weight.dtype} but the target on "
                             f"{target.device}/{target.dtype}: move them with heads.to(...)")

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> None:
        """Write `model.safetensors` (weights in `dtype`, the draft vocabulary if any) and `medusa_config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to(dtype).contiguous().cpu() for k, v in self.state_dict().items()}
        if self.draft_vocab is not None:
            tensors[DRAFT_VOCAB] = self.draft_vocab.cpu()
        save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt"})
        config = dict(num_heads=self.num_heads, own_lm_head=self.own_lm_head, target=self.target_summary,
                      target_fingerprint=self.target_fingerprint, num_parameters=self.num_parameters(),
                      draft_vocab_size=None if self.draft_vocab is None else len(self.draft_vocab))
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @staticmethod
    def fits(directory: str | Path, target: PreTrainedModel) -> bool:
        """Whether the heads saved in `directory` were trained for `target` (its shape and weights)."""
        config = json.loads((Path(directory) / CONFIG_NAME).read_text())
        saved = config.get("target_fingerprint")
        return config["target"] == target_summary_of(target) and (
            not saved or fingerprints_match(saved, target_fingerprint(target)))

    @classmethod
    def from_pretrained(cls, directory: str | Path, target: PreTrainedModel) -> MedusaHeads:
        """Load heads saved by `save_pretrained`; `ValueError` if they belong to another target."""
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} has no {name}: not saved Medusa heads")
        config = json.loads((directory / CONFIG_NAME).read_text())
        check_target(target)
        if not cls.fits(directory, target):
            raise ValueError(f"the Medusa heads in {directory} were trained for another target")
        tensors = load_file(directory / WEIGHTS_NAME)
        heads = cls(target, config["num_heads"], config["own_lm_head"], tensors.pop(DRAFT_VOCAB, None))
        heads.load_state_dict({k: v.float() for k, v in tensors.items()})
        heads.target_fingerprint = target_fingerprint(target)
        return heads.to(device=target.device, dtype=target.dtype).eval()


def _vocab_ids(token_ids: Sequence[int] | torch.Tensor | None, vocab_size: int) -> torch.Tensor | None:
    """Sorted unique token ids in the vocabulary, or None for all of them; `ValueError` otherwise."""
    if token_ids is None:
        return None
    ids = torch.as_tensor(token_ids)
    if ids.dim() != 1 or not len(ids) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"a draft vocabulary is a non-empty 1-D list of token ids, got shape {tuple(ids.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size or len(ids.unique()) != len(ids):
        raise ValueError(f"draft vocabulary ids must be distinct and in [0, {vocab_size - 1}]")
    return ids.sort().values.long()


def medusa1_parameters(target: PreTrainedModel, num_heads: int = 4) -> int:
    """Extra weights of Medusa-1 as the paper builds it (own full LM heads), counted on a model built on `meta`."""
    with torch.device("meta"):
        return MedusaHeads(target, num_heads, own_lm_head=True).num_parameters()
