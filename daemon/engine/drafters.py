"""Drafters propose continuations of the context; the verifier never knows where they came from.

An empty proposal is a normal answer: that step is a plain greedy step. There is no fallback
token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from daemon.engine.tree import Candidate

__all__ = ["ContextLookupDrafter", "Drafter", "HistoryDrafter", "NgramIndex", "SuccessorTable"]


class Drafter(Protocol):
    """Source of draft candidates for one request at a time."""

    def begin(self, prompt: Sequence[int]) -> None:
        """A new request starts with `prompt`."""

    def propose(self, context: Sequence[int], depth: int) -> list[Candidate]:
        """Candidates continuing `context` (prompt + committed tokens), each at most `depth`
        tokens long. How many nodes of them are verified is the tree builder's business."""

    def observe(
        self,
        accepted: Sequence[int],
        rows: Sequence[int] = (),
        predicted: Sequence[int] = (),
        parents: Sequence[int] = (),
    ) -> None:
        """The tokens the last step committed (accepted drafts + bonus); `rows` are the tokens
        it verified (root first), `predicted` the model's argmax after each of them, and
        `parents` the tree's parent of each row after the root (-1: the root)."""

    def finish(self, generated: Sequence[int]) -> None:
        """The request ended; `generated` is every token the model committed after the
        context `begin` got (a lead-in's tokens are in that context), those past the stop
        rule's cut included."""


class NgramIndex:
    """Positions of every n-gram (min_n..max_n) of a growing token list, updated incrementally."""

    def __init__(self, max_ngram: int = 4, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.tokens: list[int] = []
        # n -> n-gram -> positions right after each occurrence, in increasing order
        self._table: dict[int, dict[tuple[int, ...], list[int]]] = {
            n: defaultdict(list) for n in range(min_ngram, max_ngram + 1)
        }

    def extend(self, tokens: Sequence[int]) -> None:
        data = self.tokens
        indexed = len(data)
        data.extend(tokens)
        for end in range(indexed + 1, len(data) + 1):
            for n, table in self._table.items():
                if end >= n:
                    table[tuple(data[end - n : end])].append(end)

    def lookup(
        self, suffix_of: Sequence[int], depth: int, limit: int, exclude_end: int = -1
    ) -> list[Candidate]:
        """Continuations of the longest-first n-gram suffixes of `suffix_of` found here.

        Most recent occurrences first, each start used once, weight n (longer matches count
        more); `exclude_end` drops the occurrence that is the query itself.
        """
        data = self.tokens
        candidates: list[Candidate] = []
        seen: set[int] = set()
        for n in range(min(self.max_ngram, len(suffix_of)), self.min_ngram - 1, -1):
            positions = self._table[n].get(tuple(suffix_of[len(suffix_of) - n :]), ())
            for start in reversed(positions):
                if start >= len(data) or start == exclude_end or start in seen:
                    continue
                seen.add(start)
                continuation = tuple(data[start : start + depth])
                match = _match_length(data, start, suffix_of, n)
                candidates.append(Candidate(continuation, weight=float(n), match=match))
                if len(candidates) >= limit:
                    return candidates
        return candidates

    def analogies(
        self, suffix_of: Sequence[int], depth: int, limit: int, reach: int = 3
    ) -> list[Candidate]:
        """Continuations of earlier places where the end of `suffix_of` occurred with one of
        its last `reach` tokens different, that token's old value replaced by the new one in
        what followed: after `mode=self.mode,` a line's `encoding` drafts `=self.encoding,`.

        For each position of the differing token (last first): the longest n-gram before it
        that occurred here, most recent occurrences first, at most `limit` of them, weight n;
        `match` counts the equal tokens around the different one. Code repeats shapes with new
        names (keyword arguments, assignments, parallel branches) where exact lookup finds
        nothing or the old name.
        """
        data = self.tokens
        end_of_query = len(suffix_of)
        candidates: list[Candidate] = []
        for back in range(1, reach + 1):
            changed = end_of_query - back  # where the differing token is in the query
            if changed < self.min_ngram:
                break
            new = suffix_of[changed]
            after = list(suffix_of[changed + 1 :])
            found: list[Candidate] = []
            for n in range(min(self.max_ngram, changed), self.min_ngram - 1, -1):
                positions = self._table[n].get(tuple(suffix_of[changed - n : changed]), ())
                for at in reversed(positions[-_ANALOGY_SCAN:]):  # at: the old token
                    start = at + back  # the continuation's first token
                    old = data[at] if at < len(data) else new
                    if start >= len(data) or old == new or data[at + 1 : start] != after:
                        continue
                    followed = data[start : start + depth]
                    continuation = tuple(new if t == old else t for t in followed)
                    found.append(Candidate(continuation, weight=float(n), match=n + back - 1))
                    if len(found) >= limit:
                        break
                if found:
                    break
            candidates += found
        return candidates


# occurrences of a short n-gram an analogy looks at, newest first: a common token (`.`, a
# newline) has hundreds, and the newest are where the code's current shape is
_ANALOGY_SCAN = 64
_MAX_MATCH = 32  # how far back a match is followed: evidence beyond this adds nothing


def _match_length(data: Sequence[int], end: int, query: Sequence[int], known: int) -> int:
    """How many tokens before data[end] equal the end of `query` (at least `known`, which the
    n-gram table already vouched for): a longer match is better evidence for scored trees."""
    length = known
    limit = min(_MAX_MATCH, end, len(query))
    while length < limit and data[end - length - 1] == query[len(query) - length - 1]:
        length += 1
    return length


class ContextLookupDrafter:
    """Finds the context's current suffix earlier in the context and proposes what followed.

    Like prompt lookup decoding, but it keeps an incremental n-gram index instead of rescanning,
    and merges several earlier occurrences (most recent first, longer matches weighted higher)
    into one tree instead of betting on a single continuation.
    """

    def __init__(
        self, max_ngram: int = 4, min_ngram: int = 1, max_matches: int = 8, max_analogies: int = 4
    ) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.max_matches = max_matches
        self.max_analogies = max_analogies  # per position of the changed token
        self._index = NgramIndex(max_ngram, min_ngram)

    def begin(self, prompt: Sequence[int]) -> None:
        self._index = NgramIndex(self.max_ngram, self.min_ngram)
        self._index.extend(prompt)

    def observe(
        self,
        accepted: Sequence[int],
        rows: Sequence[int] = (),
        predicted: Sequence[int] = (),
        parents: Sequence[int] = (),
    ) -> None:
        """Nothing to learn: `propose` indexes whatever the context gained."""

    def finish(self, generated: Sequence[int]) -> None:
        pass

    def propose(
        self, context: Sequence[int], depth: int, query: Sequence[int] | None = None
    ) -> list[Candidate]:
        """`query`: the context's end to look up, when it is not `context`'s own (a
        fill-in-the-middle prompt's text in document order; see RetrievalDrafter)."""
        self._follow(context)
        return self._index.lookup(context if query is None else query, depth, self.max_matches)

    def analogies(
        self, context: Sequence[int], depth: int, query: Sequence[int] | None = None
    ) -> list[Candidate]:
        """Earlier code of the same shape with one name changed (`NgramIndex.analogies`)."""
        self._follow(context)
        return self._index.analogies(context if query is None else query, depth, self.max_analogies)

    def _follow(self, context: Sequence[int]) -> None:
        """Index what `context` gained since the last call."""
        known = self._index.tokens
        if len(context) < len(known) or context[: len(known)] != known:
            self.begin(context)  # not our request's context: start over rather than mis-draft
        else:
            self._index.extend(context[len(known) :])


class HistoryDrafter:
    """The model's own earlier output (across requests), looked up by the context's suffix.

    This is the LLM-preference half of the paper's cache: code the model wrote and kept is the
    best predictor of what it writes next near the same code. Each output is kept after the
    end of the context it answered (its `lead`), so an answer's first tokens are found too:
    an editor asks again and again at places that end alike (`):` at a line's end, a blank
    line's indentation), and the model tends to answer alike there.
    """

    def __init__(self, max_tokens: int = 200_000, max_matches: int = 4) -> None:
        self.max_tokens = max_tokens
        self.max_matches = max_matches
        self._index = NgramIndex(max_ngram=4, min_ngram=2)

    def remember(self, tokens: Sequence[int], lead: Sequence[int] = ()) -> None:
        """Keep `tokens`, the model's output, after `lead`, the end of the context it followed."""
        tokens = [*lead, *tokens]
        if len(self._index.tokens) + len(tokens) > self.max_tokens:
            kept = self._index.tokens[-(self.max_tokens // 2) :]
            self._index = NgramIndex(max_ngram=4, min_ngram=2)
            self._index.extend(kept)
        # a separator no tokenizer produces keeps two requests' outputs from gluing together
        self._index.extend([*tokens, -1])

    def propose(self, context: Sequence[int], depth: int) -> list[Candidate]:
        found = self._index.lookup(context, depth, self.max_matches)
        return [
            Candidate(
                c.tokens[: c.tokens.index(-1)] if -1 in c.tokens else c.tokens,
                c.weight,
                match=c.match,
            )
            for c in found
            if c.tokens and c.tokens[0] != -1
        ]


class SuccessorTable:
    """The model's argmax after each row it verified, rejected branches included: every verify
    computes them anyway (Token Recycling, arXiv 2408.08696, with the argmax alone: our forward
    port returns no top-k). Each is kept under the row's last 1..`order` tokens (the context's
    end, then the tree's path down to the row), so what the model predicted after a branch it
    rejected drafts for the context that later ends the same way. Kept across requests, newest
    answer per key, the oldest keys dropped past `max_keys`."""

    def __init__(self, order: int = 3, max_keys: int = 200_000) -> None:
        self.order = order
        self.max_keys = max_keys
        self._next: dict[tuple[int, ...], int] = {}  # insertion order = age

    def learn(
        self,
        tail: Sequence[int],
        rows: Sequence[int],
        parents: Sequence[int],
        predicted: Sequence[int],
    ) -> None:
        """`tail`: the context's last tokens, ending with `rows[0]` (the root); `parents`: each
        node's parent (-1 the root) for `rows[1:]`; `predicted`: the argmax after each row,
        negative where unknown."""
        order = self.order
        ends = [tuple(tail[-order:]) if tail and tail[-1] == rows[0] else (rows[0],)]
        for node, parent in enumerate(parents):
            ends.append((*ends[parent + 1], rows[node + 1])[-order:])
        table = self._next
        for end, following in zip(ends, predicted, strict=False):
            if following < 0:
                continue
            for k in range(1, len(end) + 1):
                key = end[-k:]
                table.pop(key, None)  # re-inserted: now the newest
                table[key] = following
        if len(table) > self.max_keys:
            for key in list(table)[: len(table) - self.max_keys // 2]:
                del table[key]

    def propose(self, context: Sequence[int], depth: int) -> list[Candidate]:
        """One chain per key length whose answer differs from the longer keys' (longest
        first), each continued along the longest known key of its own end; `match` is the key
        length that drafted its first token."""
        candidates = []
        firsts: set[int] = set()
        end = tuple(context[-self.order :])
        for k in range(len(end), 0, -1):
            first = self._next.get(end[-k:])
            if first is None or first in firsts:
                continue
            firsts.add(first)
            chain = [first]
            while len(chain) < depth and (after := self._longest(end + tuple(chain))) is not None:
                chain.append(after)
            candidates.append(Candidate(tuple(chain), source="recycled", match=k))
        return candidates

    def _longest(self, tokens: tuple[int, ...]) -> int | None:
        for k in range(min(self.order, len(tokens)), 0, -1):
            found = self._next.get(tokens[-k:])
            if found is not None:
                return found
        return None
