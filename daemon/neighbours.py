"""Code from other files the user worked on lately, for the prompt (llama.vim's ring of chunks
is the anchor): chunks of lines around the places last edited, the oldest dropped first, and a
new chunk replacing older ones of the same file that it overlaps.

The chunks of the file being completed are left out of its own prompt (its text is there
already), so typing in one file keeps the start of its prompt, and with it the reusable KV
rows, unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Chunk", "ChunkRing"]


@dataclass(frozen=True)
class Chunk:
    path: Path
    first_line: int
    text: str

    @property
    def last_line(self) -> int:
        return self.first_line + self.text.count("\n")


class ChunkRing:
    """The latest `size` chunks of `lines` lines; safe to use from several threads."""

    def __init__(self, size: int = 8, lines: int = 32) -> None:
        self.size, self.lines = size, lines
        self._chunks: list[Chunk] = []
        self._lock = threading.Lock()

    def edited(self, path: Path, before: str | None, after: str) -> None:
        """`path` now holds `after` (it held `before`, None when just opened): keep the lines
        around the first one that changed (the top of a file just opened)."""
        line = 0 if before is None else _first_changed_line(before, after)
        rows = after.splitlines(keepends=True)
        first = max(0, min(line - self.lines // 2, len(rows) - self.lines))
        text = "".join(rows[first : first + self.lines])
        if not text.strip():
            return
        chunk = Chunk(path, first, text)
        with self._lock:
            kept = [c for c in self._chunks if not _overlap(c, chunk)]
            self._chunks = [*kept, chunk][-self.size :]

    def forget(self, path: Path) -> None:
        """`path` is gone (deleted, or left the workspace)."""
        with self._lock:
            self._chunks = [c for c in self._chunks if c.path != path]

    def chunks(self, leave_out: Path | None = None) -> list[Chunk]:
        """The chunks, oldest first, without those of `leave_out`."""
        with self._lock:
            return [c for c in self._chunks if c.path != leave_out]


def _first_changed_line(before: str, after: str) -> int:
    old, new = before.splitlines(), after.splitlines()
    for index, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return index
    return min(len(old), len(new))


def _overlap(a: Chunk, b: Chunk) -> bool:
    return a.path == b.path and a.first_line <= b.last_line and b.first_line <= a.last_line
