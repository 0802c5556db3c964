"""Token datastores: a uint32 token array with a suffix array, searched for the context's suffix.

Documents are joined with a separator no tokenizer emits, so a match never spans two files and a
continuation stops at the end of its file. Retrieval (REST-style): the longest suffix of the
context (16 tokens down to 2) that occurs in the store, and what followed its occurrences.
Qwen's vocabulary (151,936) does not fit REST's u16 store, hence uint32.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydivsufsort import divsufsort

from daemon.engine.atomic import staged_folder

__all__ = ["SEPARATOR", "Match", "StoreCorrupt", "SuffixIndex", "crc32_of"]

SEPARATOR = 0xFFFF_FFFF  # no tokenizer has 2**32 - 1 tokens
SCHEMA = 1
_TOKENS, _SUFFIXES, _META = "tokens.npy", "suffixes.npy", "meta.json"
_VISIBLE_CHECK = 64  # occurrences looked at for one outside the hidden spans


class StoreCorrupt(Exception):
    """A persisted store failed its length or checksum check; the caller rebuilds it."""


@dataclass(frozen=True, slots=True)
class Match:
    """Where the longest matching context suffix (`length` tokens) occurs: a suffix-array range."""

    length: int
    low: int
    high: int

    @property
    def count(self) -> int:
        return self.high - self.low


class SuffixIndex:
    """Immutable searchable token store (arrays may be memory-mapped)."""

    def __init__(
        self,
        tokens: np.ndarray,
        suffixes: np.ndarray,
        meta: dict[str, Any],
        hidden: np.ndarray | None = None,
        pairs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.tokens = tokens  # (T,) uint32, documents joined by SEPARATOR
        self.suffixes = suffixes  # (T,) int32/int64 suffix start positions in sorted order
        self.meta = meta
        self.hidden = hidden  # (H, 2) sorted [start, end) token ranges never drafted from
        # made here, not at the first search: ~0.2-0.7 s for the 3M-token general store, which
        # a completion request should not wait for
        self._pairs = _pair_runs(tokens, suffixes) if pairs is None else pairs

    def hiding(self, spans: Iterable[tuple[int, int]]) -> SuffixIndex:
        """The same index (arrays shared) with `spans` left out of every continuation."""
        ordered = np.array(sorted(spans), dtype=np.int64).reshape(-1, 2)
        return SuffixIndex(self.tokens, self.suffixes, self.meta, ordered, self._pairs)

    @classmethod
    def build(
        cls, documents: Iterable[Sequence[int] | np.ndarray], meta: dict[str, Any]
    ) -> SuffixIndex:
        parts: list[np.ndarray] = []
        for document in documents:
            if len(document):
                parts.append(np.asarray(document, dtype=np.uint32))
                parts.append(np.array([SEPARATOR], dtype=np.uint32))
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
        suffixes = divsufsort(tokens) if len(tokens) else np.zeros(0, dtype=np.int32)
        return cls(tokens, suffixes, {**meta, "schema": SCHEMA, "documents": len(parts) // 2})

    def __len__(self) -> int:
        return len(self.tokens)

    # -- search -----------------------------------------------------------------------------

    def _range(self, pattern: list[int]) -> tuple[int, int]:
        """Suffix-array range [low, high) of the suffixes that start with `pattern`."""
        tokens, suffixes, n = self.tokens, self.suffixes, len(pattern)
        low, high = 0, len(suffixes)
        if n >= 2:  # within the run of the pattern's first two tokens
            keys, runs = self._pairs
            key = _token_code(pattern[0]) << 32 | (_token_code(pattern[1]) + 1)
            at = int(np.searchsorted(keys, key))
            if at == len(keys) or int(keys[at]) != key:
                return low, low
            low, high = int(runs[at]), int(runs[at + 1])
            if n == 2:
                return low, high
        end = high
        while low < high:  # first suffix >= pattern
            mid = (low + high) // 2
            start = int(suffixes[mid])
            if tokens[start : start + n].tolist() < pattern:
                low = mid + 1
            else:
                high = mid
        first, high = low, end
        while low < high:  # first suffix whose n-prefix > pattern
            mid = (low + high) // 2
            start = int(suffixes[mid])
            if tokens[start : start + n].tolist() <= pattern:
                low = mid + 1
            else:
                high = mid
        return first, low

    def longest_match(
        self, context: Sequence[int], max_len: int = 16, min_len: int = 2
    ) -> Match | None:
        """The longest suffix of `context` (max_len..min_len tokens) found in the store.

        If a suffix of length n occurs, every shorter suffix occurs too, so binary search over n.
        Occurrences in hidden spans do not count: a file's old copy, hidden because the editor
        holds a newer one, holds the context's own text, and its match would shadow the
        shorter ones everywhere else in the workspace with continuations that are all hidden.
        """
        max_len = min(max_len, len(context))
        if max_len < min_len or not len(self.tokens):
            return None
        best: Match | None = None
        low, high = min_len, max_len
        while low <= high:
            n = (low + high) // 2
            first, last = self._range(list(context[len(context) - n :]))
            if last > first and self._any_visible(first, last):
                best = Match(n, first, last)
                low = n + 1
            else:
                high = n - 1
        return best

    def continuations(self, match: Match, depth: int, limit: int) -> list[tuple[int, ...]]:
        """What followed up to `limit` occurrences of `match` (spread evenly over them)."""
        if match.count <= limit:
            picks = range(match.low, match.high)
        else:
            picks = np.linspace(match.low, match.high - 1, limit).astype(np.int64).tolist()
        found = []
        for pick in picks:
            if self.hidden is not None and self._is_hidden(int(self.suffixes[pick])):
                continue
            start = int(self.suffixes[pick]) + match.length
            following = self.tokens[start : start + depth].tolist()
            if SEPARATOR in following:
                following = following[: following.index(SEPARATOR)]
            if following:
                found.append(tuple(following))
        return found

    def _any_visible(self, first: int, last: int) -> bool:
        """Whether suffix-array range [first, last) has an occurrence outside the hidden spans
        (assumed for a range wider than `_VISIBLE_CHECK`: a hidden span is one file)."""
        hidden = self.hidden
        if hidden is None or not len(hidden) or last - first > _VISIBLE_CHECK:
            return True
        starts = self.suffixes[first:last].astype(np.int64)
        rows = np.searchsorted(hidden[:, 0], starts, side="right") - 1
        inside = (rows >= 0) & (starts < hidden[np.maximum(rows, 0), 1])
        return not bool(inside.all())

    def _is_hidden(self, position: int) -> bool:
        assert self.hidden is not None
        row = int(np.searchsorted(self.hidden[:, 0], position, side="right")) - 1
        return row >= 0 and position < int(self.hidden[row, 1])

    # -- persistence ------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write atomically: a temporary sibling folder, then one rename."""
        with staged_folder(folder) as staging:
            np.save(staging / _TOKENS, self.tokens)
            np.save(staging / _SUFFIXES, self.suffixes)
            meta = {
                **self.meta,
                "length": len(self.tokens),
                "crc32": [crc32_of(self.tokens), crc32_of(self.suffixes)],
            }
            (staging / _META).write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path, expect: dict[str, Any]) -> SuffixIndex:
        """Memory-map a saved store; StoreCorrupt if it is damaged or was built for other inputs."""
        try:
            meta = json.loads((folder / _META).read_text())
            tokens = np.load(folder / _TOKENS, mmap_mode="r")
            suffixes = np.load(folder / _SUFFIXES, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise StoreCorrupt(f"{folder}: unreadable ({exc})") from None
        if meta.get("schema") != SCHEMA:
            raise StoreCorrupt(f"{folder}: schema {meta.get('schema')}, need {SCHEMA}")
        for key, value in expect.items():
            if meta.get(key) != value:
                raise StoreCorrupt(f"{folder}: built for another {key}")
        if not (len(tokens) == len(suffixes) == meta.get("length")):
            raise StoreCorrupt(f"{folder}: truncated")
        if meta.get("crc32") != [crc32_of(tokens), crc32_of(suffixes)]:
            raise StoreCorrupt(f"{folder}: checksum mismatch")
        # plain views of the mapped pages: indexing a `memmap` pays its subclass hooks
        # (~1 us a slice, ~0.3 ms a step over a search's hundreds of probes)
        return cls(np.asarray(tokens), np.asarray(suffixes), meta)


def _pair_runs(tokens: np.ndarray, suffixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct first two tokens of the sorted suffixes, as one key each, in order; the
    suffix-array row where each key's run starts, then the length). A search starts inside its
    pattern's run: a few probes instead of the ~22 of a 3M-token store (a store's search took
    0.10 -> 0.05 ms)."""
    starts = np.asarray(suffixes, dtype=np.int64)
    if not len(starts):
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    tokens = np.asarray(tokens)
    first = _pair_code(tokens[starts])
    # the last suffix has no second token: code 0, below every token's (shorter sorts first)
    second = np.zeros(len(starts), dtype=np.int64)
    inside = starts + 1 < len(tokens)
    second[inside] = _pair_code(tokens[starts[inside] + 1]) + 1
    keys = first << 32 | second
    runs = np.concatenate([[0], np.flatnonzero(np.diff(keys)) + 1, [len(keys)]])
    return keys[runs[:-1]], runs.astype(np.int64)


# the separator (2**32 - 1) in a pair key: above every real token (no vocabulary comes near
# 2**31), and two codes fit one int64
_SEPARATOR_CODE = (1 << 31) - 1


def _pair_code(tokens: np.ndarray) -> np.ndarray:
    """Tokens as int64 below 2**31, order kept (the separator as `_SEPARATOR_CODE`)."""
    codes = np.asarray(tokens, dtype=np.int64)
    return np.where(codes == SEPARATOR, _SEPARATOR_CODE, codes)


def _token_code(token: int) -> int:
    """`_pair_code` of one token, in plain integers: a search's key costs no arrays."""
    return _SEPARATOR_CODE if token == SEPARATOR else int(token)


def crc32_of(array: np.ndarray) -> int:
    """Checksum of an array's bytes (detects torn or damaged store files)."""
    return zlib.crc32(np.ascontiguousarray(array).data)
