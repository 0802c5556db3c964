"""The project datastore: one token shard per workspace file, merged into one searchable index.

Adding, changing or deleting a file touches only its shard (a token file plus a manifest row),
so a save costs one file's tokenization. The merged suffix index is rebuilt lazily when
something changed (about 0.2 s per million tokens). Shards persist per workspace under the
cache folder and are reloaded at start-up; a shard that fails its check is dropped and
re-indexed from the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from daemon.engine.atomic import write_atomically
from daemon.engine.datastore import SuffixIndex, crc32_of
from daemon.engine.general_store import read_source, tokenizer_fingerprint
from daemon.engine.registry import cache_root

__all__ = ["ProjectStore"]

logger = logging.getLogger(__name__)

SOURCE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".swift",
        ".kt",
        ".scala",
        ".lua",
        ".sh",
        ".sql",
        ".md",
        ".toml",
        ".yaml",
        ".yml",
        ".json",
    ]
)
_IGNORED_DIRS = frozenset(
    [
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        "dist",
        ".tox",
        ".idea",
        ".vscode",
        "target",
    ]
)
_MANIFEST = "manifest.json"


class ProjectStore:
    """Per-file token shards of one workspace, and their merged suffix index."""

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
        self._index: SuffixIndex | None = None
        self._load()

    # -- shards -----------------------------------------------------------------------------

    def _shard_path(self, relative: str) -> Path:
        return self.folder / (hashlib.sha1(relative.encode()).hexdigest() + ".npy")

    def _load(self) -> None:
        try:
            manifest = json.loads((self.folder / _MANIFEST).read_text())
        except (OSError, ValueError):
            return
        if manifest.get("tokenizer") != self.fingerprint:
            return  # another tokenizer's ids: never used, re-indexed from the files
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

    def _save_manifest(self) -> None:
        body = {"tokenizer": self.fingerprint, "files": self._manifest}
        write_atomically(self.folder / _MANIFEST, json.dumps(body).encode())

    def update_text(self, relative: str, text: str, stat: os.stat_result | None = None) -> int:
        """Index `text` as the content of `relative`; returns its token count."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens = np.asarray(ids, dtype=np.uint32)
        buffer = _npy_bytes(tokens)
        with self._lock:
            write_atomically(self._shard_path(relative), buffer)
            self._shards[relative] = tokens
            self._manifest[relative] = {
                "tokens": len(tokens),
                "crc32": crc32_of(tokens),
                "size": stat.st_size if stat else len(text.encode()),
                "mtime_ns": stat.st_mtime_ns if stat else 0,
            }
            self._save_manifest()
            self._index = None
        return len(tokens)

    def remove(self, relative: str) -> None:
        with self._lock:
            if self._shards.pop(relative, None) is None:
                return
            self._manifest.pop(relative, None)
            self._shard_path(relative).unlink(missing_ok=True)
            self._save_manifest()
            self._index = None

    def index(self) -> SuffixIndex:
        """The merged index over all shards (rebuilt if a shard changed since the last call)."""
        with self._lock:
            if self._index is None:
                documents = [self._shards[k] for k in sorted(self._shards)]
                self._index = SuffixIndex.build(documents, {"tokenizer": self.fingerprint})
            return self._index

    @property
    def files(self) -> list[str]:
        return sorted(self._shards)

    # -- walking a folder -------------------------------------------------------------------

    def sync(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Bring the shards in line with the folder: index new and changed files, drop gone ones."""
        started = time.perf_counter()
        skipped: dict[str, int] = {}
        seen: set[str] = set()
        paths = list(_walk(self.root))
        indexed = 0
        for done, path in enumerate(paths, start=1):
            relative = path.relative_to(self.root).as_posix()
            try:
                stat = path.stat()
            except OSError:
                skipped["unreadable"] = skipped.get("unreadable", 0) + 1
                continue
            row = self._manifest.get(relative)
            if row and row["size"] == stat.st_size and row["mtime_ns"] == stat.st_mtime_ns:
                seen.add(relative)
            else:
                text, reason = read_source(path)
                if text is None:
                    skipped[reason or "?"] = skipped.get(reason or "?", 0) + 1
                else:
                    self.update_text(relative, text, stat)
                    seen.add(relative)
                    indexed += 1
            if progress:
                progress(done, len(paths))
        for gone in set(self._shards) - seen:
            self.remove(gone)
        return {
            "files": len(self._shards),
            "indexed": indexed,
            "skipped": skipped,
            "chunks": len(self._shards),
            "tokens": int(sum(len(t) for t in self._shards.values())),
            "seconds": round(time.perf_counter() - started, 3),
        }


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS and not d.startswith("."))
        for name in sorted(names):
            if Path(name).suffix in SOURCE_SUFFIXES and not name.startswith(".env"):
                yield Path(folder) / name


def _npy_bytes(tokens: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, tokens)
    return buffer.getvalue()
