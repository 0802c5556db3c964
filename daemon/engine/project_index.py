"""The project datastore's read side: the shards of a folder as searchable layers.

Search runs over a large *base* index built from every shard, plus a small *fresh* index of the
files changed since. The base's copies of those files are hidden, so a save is searchable as
soon as its one file is indexed; the base is rebuilt once the fresh layer grows past a share
of it (or on `compact()`). `WorkspaceIndex` searches several folders as one project.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from daemon.engine.datastore import SuffixIndex
from daemon.engine.project_shards import ProjectShards

__all__ = ["ProjectIndex", "WorkspaceIndex", "recurring"]

_FRESH_SHARE = 0.1  # rebuild the base once fresh tokens pass this share of it ...
_FRESH_MIN = 50_000  # ... but never for fewer than this many
_MIN_EXPRESSION_COUNT = 3  # an expression seen fewer times in the workspace is not drafted
_MAX_EXPRESSIONS = 20_000


class ProjectIndex:
    """Search layers over one folder's shards, following their changes."""

    def __init__(self, shards: ProjectShards) -> None:
        self.shards = shards
        self._lock = threading.Lock()
        self._base: SuffixIndex | None = None
        self._base_spans: dict[str, tuple[int, int]] = {}  # file -> token range in the base
        self._changed: set[str] = set()  # files whose base copy is stale (or gone)
        self._layers: tuple[SuffixIndex, ...] | None = None
        self._expressions: tuple[SuffixIndex, ...] | None = None
        self.rebuilds = 0
        shards.subscribe(self._file_changed)

    def layers(self) -> tuple[SuffixIndex, ...]:
        """The base (stale files hidden) and the fresh files, if any: the same tuple object
        until a file changes."""
        with self._lock:
            if self._layers is None:
                self._layers = self._build_layers()
            return self._layers

    def compact(self) -> None:
        """Fold every change into one base index now (e.g. after a scan, or when idle)."""
        with self._lock:
            if self._base is None or self._changed:
                self._rebuild_base()
                self._layers = None

    def expression_layers(self) -> tuple[SuffixIndex, ...]:
        """The recurring expressions, one document each (rebuilt after the files change)."""
        with self._lock:
            if self._expressions is None:
                texts = recurring(self.shards.expression_counts())
                self._expressions = ()
                if texts:
                    ids = self.shards.tokenizer(texts, add_special_tokens=False)["input_ids"]
                    meta = {"tokenizer": self.shards.fingerprint}
                    self._expressions = (SuffixIndex.build(ids, meta),)
            return self._expressions

    def _file_changed(self, relative: str) -> None:
        with self._lock:
            self._changed.add(relative)
            self._layers = self._expressions = None

    def _build_layers(self) -> tuple[SuffixIndex, ...]:
        shards = self.shards.tokens()
        fresh_files = sorted(f for f in self._changed if f in shards)
        fresh_tokens = sum(len(shards[f]) for f in fresh_files)
        base_tokens = len(self._base) if self._base is not None else 0
        if self._base is None or fresh_tokens > max(_FRESH_MIN, _FRESH_SHARE * base_tokens):
            self._rebuild_base(shards)
            return (self._base,) if self._base is not None else ()
        hidden = [self._base_spans[f] for f in self._changed if f in self._base_spans]
        base = self._base.hiding(hidden) if hidden else self._base
        if not fresh_files:
            return (base,)
        meta = {"tokenizer": self.shards.fingerprint}
        return (base, SuffixIndex.build([shards[f] for f in fresh_files], meta))

    def _rebuild_base(self, shards: dict | None = None) -> None:
        shards = self.shards.tokens() if shards is None else shards
        names = sorted(shards)
        spans, position = {}, 0
        for name in names:
            if len(shards[name]):
                spans[name] = (position, position + len(shards[name]))
                position += len(shards[name]) + 1  # the separator
        meta = {"tokenizer": self.shards.fingerprint}
        self._base = SuffixIndex.build([shards[n] for n in names], meta)
        self._base_spans = spans
        self._changed.clear()
        self.rebuilds += 1


def recurring(
    counts: Counter[str], min_count: int = _MIN_EXPRESSION_COUNT, limit: int = _MAX_EXPRESSIONS
) -> list[str]:
    """The expressions that recur, most frequent first (ties by text, for determinism)."""
    ranked = sorted((-n, text) for text, n in counts.items() if n >= min_count)
    return [text for _, text in ranked[:limit]]


class WorkspaceIndex:
    """Several workspace folders' indexes searched as one project."""

    def __init__(self) -> None:
        self._folders: dict[Path, ProjectIndex] = {}
        self._lock = threading.Lock()
        self._layers: tuple[SuffixIndex, ...] = ()

    def add(self, root: Path, index: ProjectIndex) -> None:
        with self._lock:
            self._folders[root.resolve()] = index

    def remove(self, root: Path) -> None:
        with self._lock:
            self._folders.pop(root.resolve(), None)

    def folders(self) -> dict[Path, ProjectIndex]:
        with self._lock:
            return dict(self._folders)

    def layers(self) -> tuple[SuffixIndex, ...]:
        layers = tuple(layer for index in self.folders().values() for layer in index.layers())
        with self._lock:
            if len(layers) != len(self._layers) or any(
                a is not b for a, b in zip(layers, self._layers, strict=True)
            ):
                self._layers = layers
            return self._layers

    def expression_layers(self) -> tuple[SuffixIndex, ...]:
        return tuple(
            layer for index in self.folders().values() for layer in index.expression_layers()
        )
