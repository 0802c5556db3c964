"""Source files cut into chunks: functions, methods, classes and top-level statements.

A chunk records its kind, name, byte range and line range. tree-sitter recovers from syntax
errors, so a half-written file still yields chunks around the broken part. Files without a
grammar are cut into blank-line separated blocks.

`ParsedFile.pieces()` covers the whole file, cut at the line where each top-level chunk starts:
the daemon tokenizes piece by piece, so an edit re-tokenizes only the pieces it touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

from tree_sitter import Node, Tree

from indexer.languages import (
    CLASS_NODES,
    FUNCTION_NODES,
    LEADING_NODES,
    WRAPPER_NODES,
    parser_for,
)

__all__ = ["Chunk", "ParsedFile", "parse_source"]

_MAX_METHOD_DEPTH = 4  # class -> body -> (decorator wrapper) -> method


@dataclass(frozen=True, slots=True)
class Chunk:
    kind: str  # function | method | class | statement | text
    name: str
    start_byte: int
    end_byte: int
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, inclusive
    depth: int = 0  # 0 for top-level chunks, 1+ for methods and nested classes


@dataclass(frozen=True)
class ParsedFile:
    language: str | None  # None: indexed as plain text
    source: bytes
    chunks: tuple[Chunk, ...]
    has_errors: bool = False

    def top_level(self) -> list[Chunk]:
        return [chunk for chunk in self.chunks if chunk.depth == 0]

    def pieces(self) -> list[str]:
        """The whole text, cut where each top-level chunk's first line starts."""
        cuts = {0, len(self.source)}
        for chunk in self.top_level():
            cuts.add(self.source.rfind(b"\n", 0, chunk.start_byte) + 1)
        edges = sorted(cuts)
        return [self.source[a:b].decode("utf-8") for a, b in pairwise(edges)]


def parse_source(
    source: bytes, language: str | None, old_tree: Tree | None = None
) -> tuple[ParsedFile, Tree | None]:
    """Chunks of `source`; pass the edited previous tree to re-parse incrementally."""
    parser = parser_for(language) if language else None
    if parser is None:
        return ParsedFile(None, source, tuple(_text_blocks(source))), None
    tree = parser.parse(source, old_tree) if old_tree is not None else parser.parse(source)
    chunks = tuple(_chunks(tree.root_node, source))
    return ParsedFile(language, source, chunks, tree.root_node.has_error), tree


def _chunks(root: Node, source: bytes) -> Iterator[Chunk]:
    leading: Node | None = None  # first of the comments right above the next chunk
    previous_end = -1  # last row of the previous chunk
    for node in root.named_children:
        if node.type in LEADING_NODES and node.start_point[0] > previous_end:
            leading = leading or node
            continue
        if node.type in LEADING_NODES:  # a trailing comment on the previous chunk's last line
            continue
        start = leading or node
        leading = None
        previous_end = node.end_point[0]
        kind = _kind(node)
        yield _chunk(kind or "statement", node, start, 0)
        if kind == "class":
            yield from _members(_definition(node), 1)
    if leading is not None:  # trailing comments form a statement chunk of their own
        yield _chunk("statement", leading, leading, 0)


def _members(owner: Node, depth: int) -> Iterator[Chunk]:
    """Methods and nested classes of a class-like node (not the insides of functions)."""
    stack = [(child, 1) for child in reversed(owner.named_children)]
    while stack:
        node, level = stack.pop()
        kind = _kind(node)
        if kind in ("function", "class"):
            yield _chunk("method" if kind == "function" else "class", node, node, depth)
            if kind == "class":
                yield from _members(_definition(node), depth + 1)
        elif level < _MAX_METHOD_DEPTH:
            stack.extend((child, level + 1) for child in reversed(node.named_children))


def _kind(node: Node) -> str | None:
    definition = _definition(node)
    if definition.type in FUNCTION_NODES:
        return "function"
    if definition.type in CLASS_NODES:
        return "class"
    return None


def _definition(node: Node) -> Node:
    """The definition inside a wrapper (decorators, `export`, templates), or the node itself."""
    while node.type in WRAPPER_NODES:
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is None:
            named = [c for c in node.named_children if c.type in FUNCTION_NODES | CLASS_NODES]
            if not named:
                return node
            inner = named[0]
        node = inner
    return node


def _name(node: Node) -> str:
    node = _definition(node)
    for _ in range(4):  # C declarators nest: pointer -> function -> identifier
        # "type" names a Rust impl block; Go keeps a type's name one level down
        name = node.child_by_field_name("name")
        if name is None and node.type == "impl_item":
            name = node.child_by_field_name("type")
        if name is not None:
            return (name.text or b"").decode("utf-8", "replace")
        declarator = node.child_by_field_name("declarator")
        if declarator is None and node.named_child_count:
            declarator = node.named_children[0]
        if declarator is None:
            break
        if declarator.type in ("identifier", "field_identifier"):
            return (declarator.text or b"").decode("utf-8", "replace")
        node = declarator
    return ""


def _chunk(kind: str, node: Node, start: Node, depth: int) -> Chunk:
    return Chunk(
        kind=kind,
        name=_name(node) if kind != "statement" else "",
        start_byte=start.start_byte,
        end_byte=node.end_byte,
        start_line=start.start_point[0],
        end_line=node.end_point[0],
        depth=depth,
    )


def _text_blocks(source: bytes) -> Iterator[Chunk]:
    """Blank-line separated blocks of a file without a grammar."""
    offset = 0
    start: int | None = None
    start_line = line = 0
    for raw in source.splitlines(keepends=True):
        if raw.strip() and start is None:
            start, start_line = offset, line
        elif not raw.strip() and start is not None:
            yield Chunk("text", "", start, offset, start_line, line - 1)
            start = None
        offset += len(raw)
        line += 1
    if start is not None:
        yield Chunk("text", "", start, offset, start_line, line - 1)
