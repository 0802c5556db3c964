"""The project datastore: one token shard per workspace file, searchable as two layers.

The indexer hands each file over as pieces (cut where its top-level chunks start); pieces are
tokenized through a cache keyed by their text, so a save re-tokenizes only the chunks it
touched. Shards persist per workspace under the cache folder with a manifest row per file
(fingerprint, token count, CRC32); a shard that fails its check is dropped and re-indexed.

Search runs over a large *base* index built from every shard, plus a small *fresh* index of the
files changed since. The base's copies of those files are hidden, so a save is searchable as
soon as its one file is indexed; the base is rebuilt once the fresh layer grows past a share
of it (or on `compact()`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from daemon.engine.atomic import write_atomically
from daemon.engine.datastore import SuffixIndex, crc32_of
from daemon.engine.general_store import tokenizer_fingerprint
from daemon.engine.registry import cache_root
from indexer.chunks import ParsedFile
from indexer.expressions import frequent
from indexer.filters import IndexRules
from indexer.scan import Fingerprint, FolderIndexer

__all__ = ["ProjectSource", "ProjectStore", "ProjectStores"]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"
_SCHEMA = 2
_FRESH_SHARE = 0.1  # rebuild the base once fresh tokens pass this share of it ...
_FRESH_MIN = 50_000  # ... but never for fewer than this many
_PIECE_CACHE_TOKENS = 4_000_000


class ProjectSource(Protocol):
    """What drafting reads from project code: search layers (the same tuple object until
    something changes, so callers can keep caches keyed by it)."""

    def layers(self) -> tuple[SuffixIndex, ...]: ...

    def expression_layer(self) -> SuffixIndex | None: ...


class ProjectStores:
    """Several workspace folders' stores searched as one project."""

    def __init__(self) -> None:
        self.stores: dict[Path, ProjectStore] = {}
        self._layers: tuple[SuffixIndex, ...] = ()

    def layers(self) -> tuple[SuffixIndex, ...]:
        layers = tuple(layer for store in list(self.stores.values()) for layer in store.layers())
        if len(layers) != len(self._layers) or any(
            a is not b for a, b in zip(layers, self._layers, strict=True)
        ):
            self._layers = layers
        return self._layers

    def expression_layer(self) -> SuffixIndex | None:
        return None  # measured to add nothing (README); the single-folder store offers it


class ProjectStore:
    """Token shards of one workspace folder (an indexer `FolderSink`) and their search layers."""

    def __init__(self, root: Path, tokenizer: Any, folder: Path | None = None) -> None:
        self.root = root.resolve()
        self.tokenizer = tokenizer
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self.folder = folder or cache_root() / "projects" / f"{key}-{self.fingerprint}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._shards: dict[str, np.ndarray] = {}  # relative path -> (T,) uint32 tokens
        self._manifest: dict[str, dict[str, Any]] = {}
        self._expressions: dict[str, Counter[str]] = {}
        self._pieces: OrderedDict[str, np.ndarray] = OrderedDict()  # text sha1 -> tokens
        self._piece_tokens = 0
        self._dirty = False  # manifest differs from disk
        self._base: SuffixIndex | None = None
        self._base_spans: dict[str, tuple[int, int]] = {}  # file -> token range in the base
        self._changed: set[str] = set()  # files whose base copy is stale (or gone)
        self._layers: tuple[SuffixIndex, ...] | None = None
        self._expression_layer: SuffixIndex | None = None
        self.rebuilds = 0
        self._load()

    # -- FolderSink -------------------------------------------------------------------------

    def fingerprints(self) -> Mapping[str, Fingerprint]:
        with self._lock:
            return {
                relative: Fingerprint(row["size"], row["mtime_ns"], row["sha1"])
                for relative, row in self._manifest.items()
            }

    def put(
        self,
        relative: str,
        parsed: ParsedFile,
        expressions: Counter[str],
        fingerprint: Fingerprint,
    ) -> None:
        tokens = self._tokenize(parsed.pieces())
        row = {
            "size": fingerprint.size,
            "mtime_ns": fingerprint.mtime_ns,
            "sha1": fingerprint.sha1,
            "chunks": len(parsed.chunks),
            "tokens": len(tokens),
            "crc32": crc32_of(tokens),
            "expressions": dict(expressions),
        }
        write_atomically(self._shard_path(relative), _npy_bytes(tokens))
        with self._lock:
            self._shards[relative] = tokens
            self._manifest[relative] = row
            self._expressions[relative] = expressions
            self._changed_file(relative)

    def touch(self, relative: str, fingerprint: Fingerprint) -> None:
        with self._lock:
            row = self._manifest.get(relative)
            if row is not None:
                row.update(size=fingerprint.size, mtime_ns=fingerprint.mtime_ns)
                self._dirty = True

    def move(self, old: str, new: str, fingerprint: Fingerprint) -> None:
        with self._lock:
            tokens = self._shards.pop(old, None)
            row = self._manifest.pop(old, None)
            if tokens is None or row is None:
                return
            try:
                self._shard_path(old).replace(self._shard_path(new))
            except OSError:  # shard file lost: write it again from memory
                write_atomically(self._shard_path(new), _npy_bytes(tokens))
            self._shards[new], self._manifest[new] = tokens, row
            self._expressions[new] = self._expressions.pop(old, Counter())
            self._changed_file(old)
            self._changed_file(new)

    def drop(self, relative: str) -> None:
        with self._lock:
            if self._shards.pop(relative, None) is None:
                return
            self._manifest.pop(relative, None)
            self._expressions.pop(relative, None)
            self._shard_path(relative).unlink(missing_ok=True)
            self._changed_file(relative)

    def commit(self) -> None:
        """Persist the manifest (once per batch, not once per file)."""
        with self._lock:
            if not self._dirty:
                return
            body = {"schema": _SCHEMA, "tokenizer": self.fingerprint, "files": self._manifest}
            write_atomically(self.folder / _MANIFEST, json.dumps(body).encode())
            self._dirty = False

    def summary(self) -> dict[str, Any]:
        with self._lock:
            rows = list(self._manifest.values())
        return {
            "files": len(rows),
            "chunks": sum(row["chunks"] for row in rows),
            "tokens": sum(row["tokens"] for row in rows),
        }

    def digest(self) -> dict[str, tuple[str, int, int]]:
        """File -> (content sha1, tokens, CRC32 of the tokens): what two stores of the same
        files agree on (two editors' servers share one store; a soak compares it to a fresh
        index)."""
        with self._lock:
            return {f: (r["sha1"], r["tokens"], r["crc32"]) for f, r in self._manifest.items()}

    # -- convenience ------------------------------------------------------------------------

    def sync(
        self,
        progress: Callable[[int, int], None] | None = None,
        rules: IndexRules | None = None,
    ) -> dict[str, Any]:
        """One full scan of the folder (no watching): what `codeswift index` runs."""
        started = time.perf_counter()
        report = FolderIndexer(self.root, self, rules).scan(progress)
        self.compact()
        return {**self.summary(), **report.as_dict(), "seconds": time.perf_counter() - started}

    def update_text(self, relative: str, text: str) -> int:
        """Index `text` as the content of `relative` (benchmarks hide function bodies so)."""
        raw = text.encode()
        parsed = ParsedFile(None, raw, ())
        self.put(relative, parsed, Counter(), Fingerprint.of(raw, None))
        self.commit()
        return len(self._shards[relative])

    @property
    def files(self) -> list[str]:
        return sorted(self._shards)

    def frequent_expressions(self, min_count: int = 3) -> list[str]:
        with self._lock:
            total: Counter[str] = Counter()
            for counts in self._expressions.values():
                total.update(counts)
        return frequent(total, min_count)

    def expression_layer(self) -> SuffixIndex | None:
        """The recurring expressions, one document each (rebuilt after the files change)."""
        if self._expression_layer is None:
            texts = self.frequent_expressions()
            if not texts:
                return None
            ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            self._expression_layer = SuffixIndex.build(ids, {"tokenizer": self.fingerprint})
        return self._expression_layer

    # -- search layers ----------------------------------------------------------------------

    def layers(self) -> tuple[SuffixIndex, ...]:
        """The searchable layers: the base (stale files hidden) and the fresh files, if any."""
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

    def _build_layers(self) -> tuple[SuffixIndex, ...]:
        fresh_files = sorted(f for f in self._changed if f in self._shards)
        fresh_tokens = sum(len(self._shards[f]) for f in fresh_files)
        base_tokens = len(self._base) if self._base is not None else 0
        if self._base is None or fresh_tokens > max(_FRESH_MIN, _FRESH_SHARE * base_tokens):
            self._rebuild_base()
            return (self._base,) if self._base is not None else ()
        hidden = [self._base_spans[f] for f in self._changed if f in self._base_spans]
        base = self._base.hiding(hidden) if hidden else self._base
        if not fresh_files:
            return (base,)
        fresh = SuffixIndex.build(
            [self._shards[f] for f in fresh_files], {"tokenizer": self.fingerprint}
        )
        return (base, fresh)

    def _rebuild_base(self) -> None:
        names = sorted(self._shards)
        spans, position = {}, 0
        for name in names:
            if len(self._shards[name]):
                spans[name] = (position, position + len(self._shards[name]))
                position += len(self._shards[name]) + 1  # the separator
        self._base = SuffixIndex.build(
            [self._shards[n] for n in names], {"tokenizer": self.fingerprint}
        )
        self._base_spans = spans
        self._changed.clear()
        self.rebuilds += 1

    def _changed_file(self, relative: str) -> None:
        """Call with the lock held."""
        self._changed.add(relative)
        self._layers = self._expression_layer = None
        self._dirty = True

    # -- tokens and files -------------------------------------------------------------------

    def _tokenize(self, pieces: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(p.encode(), usedforsecurity=False).hexdigest() for p in pieces]
        with self._lock:
            missing = {k: p for k, p in zip(keys, pieces, strict=True) if k not in self._pieces}
        if missing:
            ids = self.tokenizer(list(missing.values()), add_special_tokens=False)["input_ids"]
            with self._lock:
                for key, piece_ids in zip(missing, ids, strict=True):
                    self._remember_piece(key, np.asarray(piece_ids, dtype=np.uint32))
        with self._lock:
            parts = [self._pieces[k] for k in keys]
            for key in keys:
                self._pieces.move_to_end(key)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)

    def _remember_piece(self, key: str, tokens: np.ndarray) -> None:
        self._pieces[key] = tokens
        self._piece_tokens += len(tokens)
        while self._piece_tokens > _PIECE_CACHE_TOKENS and len(self._pieces) > 1:
            _, evicted = self._pieces.popitem(last=False)
            self._piece_tokens -= len(evicted)

    def _shard_path(self, relative: str) -> Path:
        return self.folder / (hashlib.sha1(relative.encode()).hexdigest() + ".npy")

    def _load(self) -> None:
        try:
            manifest = json.loads((self.folder / _MANIFEST).read_text())
        except (OSError, ValueError):
            return
        if manifest.get("tokenizer") != self.fingerprint or manifest.get("schema") != _SCHEMA:
            return  # another tokenizer's ids or an older layout: re-indexed from the files
        for relative, row in manifest.get("files", {}).items():
            try:
                tokens = np.load(self._shard_path(relative))
            except (OSError, ValueError):
                continue
            if len(tokens) == row.get("tokens") and crc32_of(tokens) == row.get("crc32"):
                self._shards[relative] = tokens
                self._manifest[relative] = row
                self._expressions[relative] = Counter(row.get("expressions", {}))
            else:
                logger.warning("project shard for %s is damaged; it will be re-indexed", relative)


def _npy_bytes(tokens: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, tokens)
    return buffer.getvalue()
