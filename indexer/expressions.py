"""Recurring expressions: calls, decorators and imports, counted per file.

The paper names mining high-frequency expressions as future work. Each file yields a count of
its one-line expressions; the daemon sums the counts, and the ones that recur across the
workspace become an extra draft source. Queries run inside tree-sitter (C), so this costs
little next to parsing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from tree_sitter import Query, QueryCursor, Tree

from indexer.languages import parser_for

__all__ = ["expressions_of"]

logger = logging.getLogger(__name__)

_PATTERNS = {
    "python": "(call) @e (decorator) @e (import_statement) @e (import_from_statement) @e",
    "javascript": "(call_expression) @e (import_statement) @e",
    "typescript": "(call_expression) @e (import_statement) @e",
    "tsx": "(call_expression) @e (import_statement) @e",
    "go": "(call_expression) @e (import_spec) @e",
    "rust": "(call_expression) @e (macro_invocation) @e (use_declaration) @e",
    "java": "(method_invocation) @e (import_declaration) @e (marker_annotation) @e",
    "c": "(call_expression) @e (preproc_include) @e",
    "cpp": "(call_expression) @e (preproc_include) @e",
}
MIN_BYTES, MAX_BYTES = 8, 120  # shorter drafts pay nothing; longer ones rarely recur verbatim
_local = threading.local()


def expressions_of(tree: Tree | None, language: str | None) -> Counter[str]:
    """How often each one-line call, decorator or import occurs in one parsed file."""
    found: Counter[str] = Counter()
    query = _query(language) if tree is not None and language else None
    if query is None or tree is None:
        return found
    for nodes in QueryCursor(query).captures(tree.root_node).values():
        for node in nodes:
            text = (node.text or b"").strip()  # an #include node ends with its newline
            if b"\n" not in text and MIN_BYTES <= len(text) <= MAX_BYTES:
                found[text.decode("utf-8", "replace")] += 1
    return found


def _query(language: str) -> Query | None:
    queries: dict[str, Query | None] = _local.__dict__.setdefault("queries", {})
    if language not in queries:
        queries[language] = None
        parser = parser_for(language)
        pattern = _PATTERNS.get(language)
        if parser is not None and parser.language is not None and pattern:
            try:
                queries[language] = Query(parser.language, pattern)
            except Exception as exc:  # a grammar without these node names: no expressions
                logger.warning("no expression query for %s: %s", language, exc)
    return queries[language]
