"""Open editor buffers, re-parsed incrementally as they are edited.

An edit is described to tree-sitter first (`Tree.edit`), then the new text is parsed with the
old tree, so only the changed region is re-parsed. A whole new text (full document sync) is
turned into one edit by trimming the common prefix and suffix.
"""

from __future__ import annotations

from tree_sitter import Point, Tree

from indexer.chunks import parse_source

__all__ = ["OpenBuffer"]


class OpenBuffer:
    """One open document: its current bytes, syntax tree and chunks."""

    def __init__(self, text: str, language: str | None) -> None:
        self.language = language
        self.source = text.encode("utf-8")
        self.parsed, self._tree = parse_source(self.source, language)
        self.reparses = 0  # incremental parses since opening (tests and stats read it)

    @property
    def text(self) -> str:
        return self.source.decode("utf-8")

    def replace(self, text: str) -> None:
        """The buffer now reads `text`: apply it as the one edit that differs."""
        new = text.encode("utf-8")
        old = self.source
        prefix = _common_prefix(old, new)
        suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])
        self.edit(prefix, len(old) - suffix, new[prefix : len(new) - suffix])

    def edit(self, start_byte: int, old_end_byte: int, new_bytes: bytes) -> None:
        """Replace bytes [start_byte, old_end_byte) with `new_bytes` and re-parse."""
        old = self.source
        if not 0 <= start_byte <= old_end_byte <= len(old):
            raise ValueError(f"edit range {start_byte}..{old_end_byte} outside 0..{len(old)}")
        new = old[:start_byte] + new_bytes + old[old_end_byte:]
        new.decode("utf-8")  # an edit that splits a character is refused before it lands
        if self._tree is not None:
            self._tree.edit(
                start_byte=start_byte,
                old_end_byte=old_end_byte,
                new_end_byte=start_byte + len(new_bytes),
                start_point=_point(old, start_byte),
                old_end_point=_point(old, old_end_byte),
                new_end_point=_point(new, start_byte + len(new_bytes)),
            )
        self.source = new
        self.parsed, self._tree = parse_source(new, self.language, self._tree)
        self.reparses += 1

    @property
    def tree(self) -> Tree | None:
        return self._tree


def _point(source: bytes, offset: int) -> Point:
    """tree-sitter's (row, column) of a byte offset; columns count bytes."""
    row = source.count(b"\n", 0, offset)
    return Point(row, offset - (source.rfind(b"\n", 0, offset) + 1))


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix, by halving (slice compares run in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low
