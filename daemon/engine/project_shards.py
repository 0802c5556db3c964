"""The project datastore's write side: one token shard per workspace file, persisted.

The indexer hands each file over as pieces (cut where its top-level chunks start); pieces are
tokenized through a cache keyed by their text, so a save re-tokenizes only the chunks it
touched. Shards persist per workspace under the cache folder with a manifest row per file
(stamp, token count, CRC32); a shard that fails its check is dropped and re-indexed. What reads
the shards (project_index.py) hears of every changed file through `subscribe`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from daemon.engine.atomic import write_atomically
from daemon.engine.datastore import crc32_of
from daemon.engine.general_store import tokenizer_fingerprint
from daemon.engine.registry import cache_root

__all__ = ["FileStamp", "ProjectShards"]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"
_SCHEMA = 2
_PIECE_CACHE_TOKENS = 4_000_000


class FileStamp(NamedTuple):
    """What says a file changed: size and mtime cheaply, the content hash for sure."""

    size: int
    mtime_ns: int
    sha1: str


class ProjectShards:
    """Token shards of one workspace folder, keyed by path relative to it (forward slashes)."""

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
        self._pieces: OrderedDict[str, np.ndarray] = OrderedDict()  # text sha1 -> tokens
        self._piece_tokens = 0
        self._dirty = False  # manifest differs from disk
        self._listeners: list[Callable[[str], None]] = []
        self._load()

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener(relative)` after every change to that file's tokens."""
        self._listeners.append(listener)

    # -- writes -----------------------------------------------------------------------------

    def stamps(self) -> dict[str, FileStamp]:
        with self._lock:
            return {
                relative: FileStamp(row["size"], row["mtime_ns"], row["sha1"])
                for relative, row in self._manifest.items()
            }

    def put(
        self,
        relative: str,
        pieces: list[str],
        chunks: int,
        expressions: Mapping[str, int],
        stamp: FileStamp,
    ) -> None:
        """The file's text as pieces, its chunk count and recurring expressions."""
        tokens = self._tokenize(pieces)
        row = {
            "size": stamp.size,
            "mtime_ns": stamp.mtime_ns,
            "sha1": stamp.sha1,
            "chunks": chunks,
            "tokens": len(tokens),
            "crc32": crc32_of(tokens),
            "expressions": dict(expressions),
        }
        write_atomically(self._shard_path(relative), _npy_bytes(tokens))
        with self._lock:
            self._shards[relative] = tokens
            self._manifest[relative] = row
            self._dirty = True
        self._changed(relative)

    def touch(self, relative: str, stamp: FileStamp) -> None:
        """Same content, new size or mtime (e.g. a save without changes)."""
        with self._lock:
            row = self._manifest.get(relative)
            if row is not None:
                row.update(size=stamp.size, mtime_ns=stamp.mtime_ns)
                self._dirty = True

    def move(self, old: str, new: str) -> None:
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
            self._dirty = True
        self._changed(old)
        self._changed(new)

    def drop(self, relative: str) -> None:
        with self._lock:
            if self._shards.pop(relative, None) is None:
                return
            self._manifest.pop(relative, None)
            self._shard_path(relative).unlink(missing_ok=True)
            self._dirty = True
        self._changed(relative)

    def commit(self) -> None:
        """Persist the manifest (once per batch, not once per file)."""
        with self._lock:
            if not self._dirty:
                return
            body = {"schema": _SCHEMA, "tokenizer": self.fingerprint, "files": self._manifest}
            write_atomically(self.folder / _MANIFEST, json.dumps(body).encode())
            self._dirty = False

    # -- reads ------------------------------------------------------------------------------

    def tokens(self) -> dict[str, np.ndarray]:
        """File -> its tokens, as of now (arrays are replaced on change, never written to)."""
        with self._lock:
            return dict(self._shards)

    def expression_counts(self) -> Counter[str]:
        """Every file's recurring-expression counts, summed."""
        total: Counter[str] = Counter()
        with self._lock:
            for row in self._manifest.values():
                total.update(row.get("expressions", {}))
        return total

    @property
    def files(self) -> list[str]:
        with self._lock:
            return sorted(self._shards)

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

    # -- tokens and files -------------------------------------------------------------------

    def _changed(self, relative: str) -> None:
        """Tell the readers; called without the lock (a reader takes its own, then ours)."""
        for listener in self._listeners:
            listener(relative)

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
            else:
                logger.warning("project shard for %s is damaged; it will be re-indexed", relative)


def _npy_bytes(tokens: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, tokens)
    return buffer.getvalue()
