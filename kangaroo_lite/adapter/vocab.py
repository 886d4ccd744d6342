"""The draft vocabulary: the tokens a drafter may propose, ranked by how often replies use them.

A drafter's LM head scores every token of the vocabulary at every draft step, although
replies use only a small part of it. Restricting the draft to the most frequent reply tokens
(FR-Spec, Zhao et al. 2025; EAGLE-3's draft vocabulary) makes each draft step cheaper and
stays lossless: the target still verifies with its whole vocabulary, and a token outside the
draft vocabulary simply arrives as the target's own token instead of as a draft.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from ..core.checks import check_positive


def reply_token_counts(data: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Counter:
    """How often each token id is a reply token, from `encode_corpus` pairs (ids, predicts-a-reply mask)."""
    counts: Counter = Counter()
    for ids, predicts_reply in data:
        counts.update(ids[1:][predicts_reply[:-1]].tolist())
    return counts


def rank_draft_vocab(counts: Counter, size: int, always: Sequence[int] = ()) -> list[int]:
    """The `size` most frequent token ids (ties by id), plus the `always` ids; sorted by id."""
    check_positive("size", size)
    ranked = sorted(counts, key=lambda token: (-counts[token], token))[:size]
    return sorted(set(ranked) | set(always))


def draft_vocab_of(data: Sequence[tuple[torch.Tensor, torch.Tensor]], size: int, eos_token_id: int | None) -> list[int]:
    """The `size` most frequent reply tokens of `encode_corpus` pairs, plus EOS (when there is one)."""
    counts = reply_token_counts(data)
    if not counts:
        raise ValueError("the corpus has no reply tokens to rank")
    return rank_draft_vocab(counts, size, [] if eos_token_id is None else [eos_token_id])


def spread_to_vocab(logits: torch.Tensor, vocab: torch.Tensor, size: int) -> torch.Tensor:
    """Logits over the draft vocabulary (..., len(vocab)) placed in the whole one (..., size); -inf elsewhere."""
    return logits.new_full((*logits.shape[:-1], size), float("-inf")).index_copy_(-1, vocab, logits)
