"""Languages by file suffix, their tree-sitter parsers, and which syntax nodes make a chunk.

Python's grammar comes from `tree-sitter-python`; the others from `tree-sitter-language-pack`
(the 0.x line, whose wheels carry the grammars: 1.x downloads them at run time, which fails
offline). A language whose grammar cannot load is indexed as plain text, never dropped.
"""

from __future__ import annotations

import logging
import threading

from tree_sitter import Language, Parser

__all__ = [
    "CLASS_NODES",
    "FUNCTION_NODES",
    "INDEXED_SUFFIXES",
    "LANGUAGE_BY_SUFFIX",
    "LEADING_NODES",
    "WRAPPER_NODES",
    "language_of",
    "parser_for",
]

logger = logging.getLogger(__name__)

LANGUAGE_BY_SUFFIX = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".kt": "kotlin",
    ".scala": "scala",
    ".swift": "swift",
    ".lua": "lua",
    ".sh": "bash",
    ".bash": "bash",
}
# Indexed as text (no grammar needed): they still hold project vocabulary worth drafting from.
TEXT_SUFFIXES = frozenset(
    {".md", ".rst", ".toml", ".yaml", ".yml", ".json", ".sql", ".cfg", ".ini"}
)
INDEXED_SUFFIXES = frozenset(LANGUAGE_BY_SUFFIX) | TEXT_SUFFIXES

FUNCTION_NODES = frozenset(
    {
        "function_definition",  # python, c, c++
        "function_declaration",  # javascript, typescript, go, swift
        "generator_function_declaration",
        "function_item",  # rust
        "method_definition",  # javascript, typescript
        "method_declaration",  # go, java, c#
        "constructor_declaration",
        "function_signature_item",
        "method",  # ruby
        "function_definition_statement",
    }
)
CLASS_NODES = frozenset(
    {
        "class_definition",  # python
        "class_declaration",  # javascript, typescript, java, c#
        "abstract_class_declaration",
        "interface_declaration",
        "enum_declaration",
        "type_alias_declaration",
        "class_specifier",  # c++
        "struct_specifier",
        "namespace_definition",
        "impl_item",  # rust
        "trait_item",
        "struct_item",
        "enum_item",
        "mod_item",
        "type_declaration",  # go
        "class",  # ruby
        "module",
    }
)
# Nodes that wrap a definition: the chunk is the wrapper, its kind the definition's.
WRAPPER_NODES = frozenset({"decorated_definition", "export_statement", "template_declaration"})
# Nodes that sit before a definition as siblings and belong to its chunk: comments, and Rust's
# `#[...]` attributes.
LEADING_NODES = frozenset({"comment", "line_comment", "block_comment", "attribute_item"})

_local = threading.local()  # tree-sitter parsers are not thread-safe: one set per thread


def language_of(suffix: str) -> str | None:
    return LANGUAGE_BY_SUFFIX.get(suffix.lower())


def parser_for(language: str) -> Parser | None:
    """This thread's parser for `language`, or None when its grammar cannot load."""
    parsers: dict[str, Parser | None] = _local.__dict__.setdefault("parsers", {})
    if language not in parsers:
        parsers[language] = _load(language)
    return parsers[language]


def _load(language: str) -> Parser | None:
    try:
        if language == "python":
            import tree_sitter_python

            return Parser(Language(tree_sitter_python.language()))
        from tree_sitter_language_pack import get_parser

        return get_parser(language)  # type: ignore[arg-type]
    except Exception as exc:  # a grammar that fails to load degrades to plain text
        logger.warning("no tree-sitter grammar for %s (%s); indexing as text", language, exc)
        return None
