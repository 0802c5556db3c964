"""Putting the pieces together: an engine with its stores, and the indexer feeding them.

The engine knows nothing of the indexer and the indexer nothing of the engine; this module is
where they meet. The general store's corpus is read with the indexer's file reader, and a
folder's project shards are the indexer's sink through `ShardSink`.
"""

from __future__ import annotations

import sysconfig
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from daemon.engine.backends import open_forward
from daemon.engine.datastore import SuffixIndex
from daemon.engine.engine import Engine
from daemon.engine.general_store import open_general_store
from daemon.engine.models import load_model
from daemon.engine.project_index import ProjectIndex, WorkspaceIndex
from daemon.engine.project_shards import FileStamp, ProjectShards
from indexer.chunks import ParsedFile
from indexer.filters import IndexRules, read_text
from indexer.scan import Fingerprint, FolderIndexer

__all__ = [
    "ShardSink",
    "corpus_files",
    "open_engine",
    "open_general",
    "open_project",
    "read_corpus_file",
    "scan_project",
]

Progress = Callable[[int, int], None]

_MAX_CORPUS_FILE_BYTES = 1 << 20
_SKIP_PARTS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}


def open_engine(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    backend: str = "auto",
    general: bool = True,
    corpus: Sequence[Path] = (),
    project: WorkspaceIndex | None = None,
    workspace: Path | None = None,
) -> Engine:
    """Load the model on `backend` (backends.py) and the general store (built on first use,
    cached after, from the standard library plus `corpus` folders). `project` is what drafting
    reads of the workspace (the language server's indexer fills it); `workspace` is a folder
    scanned into it now."""
    lm = load_model(model, device, dtype)
    store = open_general(lm.tokenizer, corpus) if general else None
    if workspace is not None:
        project = project if project is not None else WorkspaceIndex()
        index = open_project(workspace, lm.tokenizer)
        scan_project(index)
        project.add(workspace, index)
    return Engine(lm, open_forward(lm, backend), store, project)


# -- the general store's corpus -------------------------------------------------------------


def corpus_files(extra_folders: Sequence[Path] = ()) -> list[Path]:
    """The standard library's own .py files (its tests and site-packages left out), then the
    .py files of `extra_folders`."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), *map(Path, extra_folders)]
    files: list[Path] = []
    for root in roots:
        files += sorted(
            path
            for path in root.rglob("*.py")
            if not _SKIP_PARTS & set(path.relative_to(root).parts)
        )
    return files


def open_general(
    tokenizer: Any, extra_folders: Sequence[Path] = (), progress: Progress | None = None
) -> SuffixIndex:
    return open_general_store(tokenizer, corpus_files(extra_folders), read_corpus_file, progress)


def read_corpus_file(path: Path) -> tuple[str | None, str | None]:
    """(text, None), or (None, why not): the indexer's reader, at the corpus's size cap."""
    raw, reason = read_text(path, _MAX_CORPUS_FILE_BYTES)
    return (raw.decode("utf-8"), None) if raw is not None else (None, reason)


# -- project stores -------------------------------------------------------------------------


class ShardSink:
    """The indexer's `FolderSink`, writing into a folder's project shards."""

    def __init__(self, shards: ProjectShards) -> None:
        self.shards = shards

    def fingerprints(self) -> Mapping[str, Fingerprint]:
        return {path: Fingerprint(*stamp) for path, stamp in self.shards.stamps().items()}

    def put(
        self, relative: str, parsed: ParsedFile, expressions: Counter[str], fingerprint: Fingerprint
    ) -> None:
        stamp = _stamp(fingerprint)
        self.shards.put(relative, parsed.pieces(), len(parsed.chunks), expressions, stamp)

    def touch(self, relative: str, fingerprint: Fingerprint) -> None:
        self.shards.touch(relative, _stamp(fingerprint))

    def move(self, old: str, new: str, fingerprint: Fingerprint) -> None:
        self.shards.move(old, new)  # the content, hence the stamp's hash, is the same

    def drop(self, relative: str) -> None:
        self.shards.drop(relative)

    def commit(self) -> None:
        self.shards.commit()

    def summary(self) -> Mapping[str, Any]:
        return self.shards.summary()


def _stamp(fingerprint: Fingerprint) -> FileStamp:
    return FileStamp(fingerprint.size, fingerprint.mtime_ns, fingerprint.sha1)


def open_project(root: Path, tokenizer: Any, folder: Path | None = None) -> ProjectIndex:
    """The persisted shards of `root` (as the last run left them) and their search layers."""
    return ProjectIndex(ProjectShards(root, tokenizer, folder))


def scan_project(
    index: ProjectIndex, rules: IndexRules | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """One full scan of the folder (no watching), then one base index: `codeswift index`."""
    started = time.perf_counter()
    shards = index.shards
    report = FolderIndexer(shards.root, ShardSink(shards), rules).scan(progress)
    index.compact()
    return {**shards.summary(), **report.as_dict(), "seconds": time.perf_counter() - started}
