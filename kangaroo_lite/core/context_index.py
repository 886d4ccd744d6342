"""Copy drafts: what followed the longest suffix match earlier in the context (prompt lookup, SAM-style).

An answer often repeats its context: a summary quotes its article, a translation keeps names and
numbers, a RAG answer copies its passage. `ContextIndex` keeps an n-gram table of the prompt and
the accepted tokens, updated as tokens are appended (a constant amount of work per token, never
a rescan of the context), and proposes the tokens that followed the most recent earlier
occurrence of the longest suffix of `min_match` … `max_match` tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

from .checks import check_positive


class ContextIndex:
    """An incremental n-gram index of one token sequence that proposes copies of its continuations."""

    def __init__(self, tokens: Iterable[int] = (), min_match: int = 2, max_match: int = 4):
        check_positive("min_match", min_match)
        if max_match < min_match:
            raise ValueError(f"max_match ({max_match}) must be at least min_match ({min_match})")
        self.min_match, self.max_match = min_match, max_match
        self.tokens: list[int] = []
        # n-gram → where its most recent occurrence's continuation starts (n-grams that have one only)
        self.continuation: dict[tuple[int, ...], int] = {}
        self._match: tuple[int, int] | None = None  # `match()` of the tokens as they are, until they grow
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        """Append accepted tokens: each one becomes the continuation of the n-grams that end just before it."""
        for token in tokens:
            self._match = None
            start = len(self.tokens)
            self.tokens.append(int(token))
            for n in range(self.min_match, min(self.max_match, start) + 1):
                self.continuation[tuple(self.tokens[start - n: start])] = start

    def match(self) -> tuple[int, int]:
        """(length, continuation start) of the longest suffix seen before; (0, -1) when none is."""
        if self._match is None:
            self._match = next(((n, self.continuation[key]) for n in range(min(self.max_match, len(self.tokens)),
                                                                          self.min_match - 1, -1)
                                if (key := tuple(self.tokens[-n:])) in self.continuation), (0, -1))
        return self._match

    def propose(self, count: int) -> list[int]:
        """Up to `count` tokens that followed the longest matching suffix; empty when nothing matches."""
        if count <= 0:
            return []
        _, start = self.match()
        return [] if start < 0 else self.tokens[start: start + count]
