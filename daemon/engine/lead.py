"""Text a completion must begin with: the word typed before the cursor (token healing).

A prompt that ends inside a word ends on a token boundary the model never saw there in
training ("environ" + "me" where "environment" is one token), and the model then treats the
boundary as the end of the word. So the editor's prompt stops before the word, and the word is
a `Lead`: greedy decoding picks, among the tokens that agree with what is left of it, the one
with the highest logit, one row at a time, until the lead is covered; then decoding goes on
unconstrained. Speculative and plain decoding run the same lead-in, so they stay identical (a
short prefill that carries a draft verifies its rows under the same restriction: decode.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["Lead", "LeadIn", "TokenTexts"]


class LeadIn(Protocol):
    """What the decode loop asks of a lead."""

    def allowed(self, written: Sequence[int]) -> list[int] | None:
        """The tokens that may come after `written`; None: decode unconstrained from here."""


class TokenTexts:
    """Every token's text, indexed by its first one and two characters (built once per
    tokenizer: a lead-in step looks up a few dozen candidates, not the ~30,000 tokens that
    start with a space)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._by_first: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._by_two: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._single: dict[str, int] = {}
        for token, text in enumerate(texts):
            if not text:
                continue
            self._by_first[text[0]].append((token, text))
            if len(text) == 1:
                self._single.setdefault(text, token)
            else:
                self._by_two[text[:2]].append((token, text))

    def agreeing(self, rest: str) -> list[int]:
        """Tokens whose text is a start of `rest` or starts with it, lowest id first."""
        if len(rest) < 2:
            return [token for token, _ in self._by_first.get(rest, ())]
        found = [
            token
            for token, text in self._by_two.get(rest[:2], ())
            if rest.startswith(text) or text.startswith(rest)
        ]
        if rest[0] in self._single:
            found.append(self._single[rest[0]])
        return sorted(found)


class Lead:
    """`text` that the completion starts with, and the tokens allowed while it is not covered."""

    def __init__(
        self, text: str, vocabulary: TokenTexts, decode: Callable[[Sequence[int]], str]
    ) -> None:
        self.text = text
        self._vocabulary = vocabulary
        self._decode = decode

    def allowed(self, written: Sequence[int]) -> list[int] | None:
        """Tokens that may follow `written` (what the lead-in wrote so far); None once the lead
        is covered, or when no token agrees (then decoding goes on unconstrained and the
        completion will not start with the lead)."""
        text = self._decode(written)
        if not self.text.startswith(text):
            return None
        rest = self.text[len(text) :]
        if not rest:
            return None
        return self._vocabulary.agreeing(rest) or None
