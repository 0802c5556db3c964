"""Drafters propose continuations of the context; the verifier never knows where they came from.

An empty proposal is a normal answer: that step is a plain greedy step. There is no fallback
token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from daemon.engine.tree import Candidate

__all__ = ["ContextLookupDrafter", "Drafter"]


class Drafter(Protocol):
    """Source of draft candidates for one request at a time."""

    def begin(self, prompt: Sequence[int]) -> None:
        """A new request starts with `prompt`."""

    def propose(self, context: Sequence[int], budget: int) -> list[Candidate]:
        """Candidates continuing `context` (prompt + committed tokens); about `budget` nodes."""

    def observe(self, accepted: Sequence[int]) -> None:
        """The tokens the last step committed (accepted drafts + bonus)."""


class ContextLookupDrafter:
    """Finds the context's current suffix earlier in the context and proposes what followed.

    Like prompt lookup decoding, but it keeps an incremental n-gram index instead of rescanning,
    and merges several earlier occurrences (most recent first, longer matches weighted higher)
    into one tree instead of betting on a single continuation.
    """

    def __init__(self, max_ngram: int = 4, min_ngram: int = 1, max_matches: int = 8) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.max_matches = max_matches
        # n -> n-gram -> positions right after each occurrence, in increasing order
        self._index: dict[int, dict[tuple[int, ...], list[int]]] = {}
        self._indexed = 0
        self._tokens: list[int] = []

    def begin(self, prompt: Sequence[int]) -> None:
        self._index = {n: defaultdict(list) for n in range(self.min_ngram, self.max_ngram + 1)}
        self._tokens = []
        self._indexed = 0
        self._extend(prompt)

    def observe(self, accepted: Sequence[int]) -> None:
        """Nothing to learn: `propose` indexes whatever the context gained."""

    def _extend(self, tokens: Sequence[int]) -> None:
        self._tokens.extend(tokens)
        data = self._tokens
        for end in range(self._indexed + 1, len(data) + 1):
            for n, table in self._index.items():
                if end >= n:
                    table[tuple(data[end - n : end])].append(end)
        self._indexed = len(data)

    def propose(self, context: Sequence[int], budget: int) -> list[Candidate]:
        if len(context) < len(self._tokens) or context[: len(self._tokens)] != self._tokens:
            self.begin(context)  # not our request's context: start over rather than mis-draft
        else:
            self._extend(context[len(self._tokens) :])
        data = self._tokens
        length = len(data)
        depth = max(budget, 1)
        candidates: list[Candidate] = []
        seen: set[int] = set()
        for n in range(min(self.max_ngram, length), self.min_ngram - 1, -1):
            positions = self._index[n].get(tuple(data[length - n :]), ())
            for start in reversed(positions):
                if start >= length or start in seen:
                    continue
                seen.add(start)
                continuation = tuple(data[start : start + depth])
                candidates.append(Candidate(continuation, weight=float(n)))
                if len(candidates) >= self.max_matches:
                    return candidates
        return candidates
