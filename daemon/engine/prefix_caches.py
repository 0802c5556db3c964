"""KV rows kept per document: the previous request's, or a warm-up's (`decode.warm`).

An editor moves between a few files; keeping one cache per document lets the first request
after a switch reuse that document's rows instead of prefilling its whole prompt again. The
least recently used documents are dropped beyond a total number of rows.
"""

from __future__ import annotations

from collections import OrderedDict

from daemon.engine.decode import PrefixCache

__all__ = ["PrefixCaches"]

# rows kept over all documents: ~25 KB of KV per row for the 0.5B model in float32, so about
# 150 MB, room for four or five documents' prompts and outputs
DEFAULT_ROWS = 6144


class PrefixCaches:
    def __init__(self, max_rows: int = DEFAULT_ROWS) -> None:
        self.max_rows = max_rows
        self._caches: OrderedDict[str, PrefixCache] = OrderedDict()

    def get(self, document: str) -> PrefixCache:
        """The cache of `document` (a new, empty one the first time), now the most recent."""
        cache = self._caches.pop(document, None) or PrefixCache()
        self._caches[document] = cache
        return cache

    def trim(self) -> None:
        """Drop the least recently used caches until the rows fit (the latest always stays)."""
        while len(self._caches) > 1 and self.rows > self.max_rows:
            self._caches.popitem(last=False)

    def drop(self, document: str) -> None:
        self._caches.pop(document, None)

    def clear(self) -> None:
        self._caches.clear()

    @property
    def rows(self) -> int:
        return sum(len(cache.tokens) for cache in self._caches.values())

    def __len__(self) -> int:
        return len(self._caches)
