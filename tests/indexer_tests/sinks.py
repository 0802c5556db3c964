"""Test helpers: an in-memory, thread-safe `FolderSink` and a bounded polling wait."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from indexer.chunks import Chunk, ParsedFile
from indexer.scan import Fingerprint

__all__ = ["RecordingSink", "Stored", "eventually"]


@dataclass(frozen=True)
class Stored:
    text: str
    chunks: tuple[Chunk, ...]
    fingerprint: Fingerprint
    expressions: Counter[str]


class RecordingSink:
    """Implements `indexer.scan.FolderSink` in memory and counts every call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, Stored] = {}
        self.puts = 0
        self.touches = 0
        self.moves = 0
        self.drops = 0
        self.commits = 0
        self.log: list[tuple[str, ...]] = []

    # -- FolderSink -------------------------------------------------------------------------

    def fingerprints(self) -> Mapping[str, Fingerprint]:
        with self._lock:
            return {relative: stored.fingerprint for relative, stored in self._files.items()}

    def put(
        self,
        relative: str,
        parsed: ParsedFile,
        expressions: Counter[str],
        fingerprint: Fingerprint,
    ) -> None:
        text = parsed.source.decode("utf-8")
        with self._lock:
            self._files[relative] = Stored(text, parsed.chunks, fingerprint, Counter(expressions))
            self.puts += 1
            self.log.append(("put", relative))

    def touch(self, relative: str, fingerprint: Fingerprint) -> None:
        with self._lock:
            old = self._files[relative]
            self._files[relative] = Stored(old.text, old.chunks, fingerprint, old.expressions)
            self.touches += 1
            self.log.append(("touch", relative))

    def move(self, old: str, new: str, fingerprint: Fingerprint) -> None:
        with self._lock:
            stored = self._files.pop(old)
            self._files[new] = Stored(stored.text, stored.chunks, fingerprint, stored.expressions)
            self.moves += 1
            self.log.append(("move", old, new))

    def drop(self, relative: str) -> None:
        with self._lock:
            del self._files[relative]
            self.drops += 1
            self.log.append(("drop", relative))

    def commit(self) -> None:
        with self._lock:
            self.commits += 1

    def summary(self) -> Mapping[str, Any]:
        with self._lock:
            return {"files": len(self._files)}

    # -- for the tests ----------------------------------------------------------------------

    def paths(self) -> set[str]:
        with self._lock:
            return set(self._files)

    def texts(self) -> dict[str, str]:
        with self._lock:
            return {relative: stored.text for relative, stored in self._files.items()}

    def get(self, relative: str) -> Stored | None:
        with self._lock:
            return self._files.get(relative)

    def text_of(self, relative: str) -> str | None:
        stored = self.get(relative)
        return None if stored is None else stored.text


def eventually(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
