"""parse_source: chunks per language, error recovery, text blocks, pieces and byte ranges."""

from __future__ import annotations

from itertools import pairwise

import pytest

from indexer.chunks import Chunk, ParsedFile, parse_source
from indexer.languages import INDEXED_SUFFIXES, LANGUAGE_BY_SUFFIX, language_of, parser_for

PYTHON = b'''"""Module docstring."""
import os
from typing import Any

CONSTANT = 3


def plain(a, b):
    return a + b


# leading comment
@decorator
@other(1, 2)
def decorated(x):
    return x


class Shape:
    """A shape."""

    def area(self):
        return 0

    @property
    def name(self):
        return "shape"

    class Inner:
        def deep(self):
            return 1


async def fetch():
    def nested():
        pass
    return nested


if __name__ == "__main__":
    plain(1, 2)
'''


def named(parsed: ParsedFile) -> list[tuple[str, str, int, int, int]]:
    return [(c.kind, c.name, c.start_line, c.end_line, c.depth) for c in parsed.chunks]


def check_ranges(parsed: ParsedFile) -> None:
    """Every chunk's bytes and lines agree with the source."""
    source = parsed.source
    for chunk in parsed.chunks:
        assert 0 <= chunk.start_byte < chunk.end_byte <= len(source), chunk
        text = source[chunk.start_byte : chunk.end_byte].decode("utf-8")  # whole characters
        assert text.strip(), chunk
        assert source.count(b"\n", 0, chunk.start_byte) == chunk.start_line, chunk
        assert source.count(b"\n", 0, chunk.end_byte - 1) == chunk.end_line, chunk
    top = parsed.top_level()
    for a, b in pairwise(top):
        assert a.end_byte <= b.start_byte, (a, b)  # top-level chunks never overlap
    assert "".join(parsed.pieces()) == source.decode("utf-8")


def test_python_chunks_names_and_lines() -> None:
    parsed, tree = parse_source(PYTHON, "python")
    assert tree is not None
    assert parsed.language == "python"
    assert not parsed.has_errors
    assert named(parsed) == [
        ("statement", "", 0, 0, 0),  # docstring
        ("statement", "", 1, 1, 0),
        ("statement", "", 2, 2, 0),
        ("statement", "", 4, 4, 0),
        ("function", "plain", 7, 8, 0),
        ("function", "decorated", 11, 15, 0),  # from its leading comment and decorators
        ("class", "Shape", 18, 30, 0),
        ("method", "area", 21, 22, 1),
        ("method", "name", 24, 26, 1),  # decorated method starts at its decorator
        ("class", "Inner", 28, 30, 1),
        ("method", "deep", 29, 30, 2),
        ("function", "fetch", 33, 36, 0),  # nested functions are not chunks of their own
        ("statement", "", 39, 40, 0),
    ]
    check_ranges(parsed)
    decorated = parsed.chunks[5]
    assert PYTHON[decorated.start_byte :].startswith(b"# leading comment\n@decorator\n")


def test_python_trailing_comment_is_a_statement() -> None:
    parsed, _ = parse_source(b"def f():\n    pass\n\n# the end\n# really\n", "python")
    assert named(parsed) == [("function", "f", 0, 1, 0), ("statement", "", 3, 3, 0)]
    check_ranges(parsed)


def test_same_line_comment_belongs_to_the_previous_statement() -> None:
    source = b"x = 1  # about x\ndef f():\n    pass\n"
    parsed, _ = parse_source(source, "python")
    function = next(c for c in parsed.chunks if c.kind == "function")
    assert function.start_line == 1
    assert source[function.start_byte :].startswith(b"def f")


def test_python_syntax_error_keeps_the_valid_functions() -> None:
    source = (
        b"def before(a):\n    return a\n\n\n"
        b"def broken(:\n    return (\n\n\n"
        b"def after(b):\n    return b\n\n\n"
        b"class Fine:\n    def ok(self):\n        return 1\n"
    )
    parsed, _ = parse_source(source, "python")
    assert parsed.has_errors
    names = {(c.kind, c.name): (c.start_line, c.end_line) for c in parsed.chunks}
    assert names[("function", "before")] == (0, 1)
    assert names[("function", "after")] == (8, 9)
    assert names[("class", "Fine")] == (12, 14)
    assert names[("method", "ok")] == (13, 14)
    check_ranges(parsed)


def test_python_half_written_file() -> None:
    source = b"import os\n\ndef done():\n    return 1\n\ndef typing_now(x, y\n"
    parsed, _ = parse_source(source, "python")
    assert parsed.has_errors
    assert ("function", "done") in {(c.kind, c.name) for c in parsed.chunks}
    assert "".join(parsed.pieces()) == source.decode()


LANGUAGE_SAMPLES = [
    ("javascript", ".js", "function greet(name) {\n  return 'hi ' + name;\n}\n", "greet"),
    ("javascript", ".mjs", "export function exported() {\n  return 1;\n}\n", "exported"),
    ("typescript", ".ts", "function greet(n: number): number {\n  return n;\n}\n", "greet"),
    ("tsx", ".tsx", "function App(): JSX.Element {\n  return <div />;\n}\n", "App"),
    ("go", ".go", "package main\n\nfunc greet(n int) int {\n\treturn n\n}\n", "greet"),
    ("rust", ".rs", "fn greet(n: i32) -> i32 {\n    n\n}\n", "greet"),
    ("java", ".java", "class A {\n  int greet(int n) {\n    return n;\n  }\n}\n", "greet"),
    ("c", ".c", "static char *greet(int n) {\n  return 0;\n}\n", "greet"),
    ("cpp", ".cpp", "int greet(int n) {\n  return n;\n}\n", "greet"),
    ("cpp", ".hpp", "template <typename T>\nT greet(T n) {\n  return n;\n}\n", "greet"),
]


@pytest.mark.parametrize(("language", "suffix", "text", "name"), LANGUAGE_SAMPLES)
def test_each_language_yields_its_function(
    language: str, suffix: str, text: str, name: str
) -> None:
    assert language_of(suffix) == language
    assert parser_for(language) is not None, f"grammar for {language} did not load"
    parsed, tree = parse_source(text.encode(), language)
    assert tree is not None
    assert not parsed.has_errors
    functions = [c for c in parsed.chunks if c.kind in ("function", "method")]
    assert [c.name for c in functions] == [name]
    check_ranges(parsed)


def test_class_like_chunks_in_other_languages() -> None:
    js = b"class Foo {\n  bar() {\n    return 1;\n  }\n}\n"
    parsed, _ = parse_source(js, "javascript")
    assert named(parsed) == [("class", "Foo", 0, 4, 0), ("method", "bar", 1, 3, 1)]
    rust = b"struct S;\n\nimpl S {\n    fn m(&self) {}\n}\n"
    parsed, _ = parse_source(rust, "rust")
    assert named(parsed) == [
        ("class", "S", 0, 0, 0),
        ("class", "S", 2, 4, 0),
        ("method", "m", 3, 3, 1),
    ]
    go = b"package p\n\ntype T struct{}\n\nfunc (t T) M() {}\n"
    parsed, _ = parse_source(go, "go")
    assert [(c.kind, c.name) for c in parsed.chunks][1:] == [("class", "T"), ("function", "M")]
    java = b"class A {\n  A() {}\n  void run() {}\n}\n"
    parsed, _ = parse_source(java, "java")
    assert [(c.kind, c.name) for c in parsed.chunks] == [
        ("class", "A"),
        ("method", "A"),
        ("method", "run"),
    ]


def test_every_listed_language_parses_or_degrades_to_text() -> None:
    for suffix, language in LANGUAGE_BY_SUFFIX.items():
        parsed, tree = parse_source(b"x\n\ny\n", language)
        assert (tree is None) == (parsed.language is None), suffix
        assert "".join(parsed.pieces()) == "x\n\ny\n"


def test_text_file_gives_blank_line_blocks() -> None:
    assert ".md" in INDEXED_SUFFIXES
    assert language_of(".md") is None
    source = b"# Title\n\nFirst para\nstill first\n\n\n\n- item\n  \n\ttail"
    parsed, tree = parse_source(source, language_of(".md"))
    assert tree is None
    assert parsed.language is None
    assert parsed.chunks == (
        Chunk("text", "", 0, 8, 0, 0),
        Chunk("text", "", 9, 32, 2, 3),
        Chunk("text", "", 35, 42, 7, 7),
        Chunk("text", "", 45, 50, 9, 9),  # a whitespace-only line separates too
    )
    assert "".join(parsed.pieces()) == source.decode()


def test_text_edge_cases() -> None:
    assert parse_source(b"", None)[0].chunks == ()
    assert parse_source(b"\n\n  \n", None)[0].chunks == ()
    assert parse_source(b"", None)[0].pieces() == []
    assert parse_source(b"", "python")[0].chunks == ()
    assert parse_source(b"", "python")[0].pieces() == []


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", PYTHON),
        ("python", b"x = 1\ny = 2\n"),
        ("python", b"def f(): pass"),  # no final newline
        ("python", b"\n\n\ndef f():\n    pass\n\n\n"),
        ("javascript", b"let a = 1; function f() {}\nclass C {}\n"),  # two chunks on a line
        ("rust", b"// c\nfn a() {}\n/* d */\nfn b() {}\n"),
        (None, b"a\n\nb\n\n\nc"),
    ],
)
def test_pieces_concatenate_to_the_source(language: str | None, source: bytes) -> None:
    parsed, _ = parse_source(source, language)
    pieces = parsed.pieces()
    assert "".join(pieces) == source.decode()
    assert all(pieces)  # no empty piece
    starts = {sum(len(p.encode()) for p in pieces[:i]) for i in range(len(pieces))}
    for chunk in parsed.top_level():
        line_start = source.rfind(b"\n", 0, chunk.start_byte) + 1
        assert line_start in starts  # every top-level chunk begins a piece


def test_pieces_cut_at_top_level_chunks() -> None:
    source = b"import os\n\ndef a():\n    pass\n\nclass B:\n    def c(self):\n        pass\n"
    parsed, _ = parse_source(source, "python")
    assert parsed.pieces() == [
        "import os\n\n",
        "def a():\n    pass\n\n",
        "class B:\n    def c(self):\n        pass\n",  # methods do not cut
    ]


def test_astral_plane_characters_keep_byte_ranges() -> None:
    text = (
        '# 😀 header 😀\nSMILE = "😀😀"\n\n\n'
        '@tag("é😀")\ndef café(x="😀"):\n    return "𝔘𝔫𝔦" + x\n\n\n'
        'class Ünïcode:\n    def wave(self):\n        return "👋🏽"\n'
    )
    source = text.encode("utf-8")
    assert len(source) > len(text)  # multi-byte characters throughout
    parsed, _ = parse_source(source, "python")
    assert not parsed.has_errors
    by_name = {c.name: c for c in parsed.chunks if c.name}
    assert set(by_name) == {"café", "Ünïcode", "wave"}
    for name, needle in (("café", "def café"), ("Ünïcode", "class Ünïcode"), ("wave", "def wave")):
        chunk = by_name[name]
        body = source[chunk.start_byte : chunk.end_byte].decode("utf-8")
        assert needle in body
        line = text.splitlines()[chunk.start_line]
        assert body.startswith(line.lstrip())
    assert source[by_name["café"].start_byte :].decode().startswith('@tag("é😀")')
    check_ranges(parsed)
    assert "".join(parsed.pieces()) == text


def test_chunks_are_hashable_and_frozen() -> None:
    parsed, _ = parse_source(b"def f():\n    pass\n", "python")
    chunk = parsed.chunks[0]
    assert hash(chunk) == hash(Chunk("function", "f", 0, 17, 0, 1, 0))
    with pytest.raises(AttributeError):
        chunk.name = "g"  # type: ignore[misc]


def test_rust_attribute_starts_its_function_chunk() -> None:
    source = b"#[test]\nfn checks() {}\n"
    parsed, _ = parse_source(source, "rust")
    assert [(c.kind, c.name, c.start_line) for c in parsed.chunks] == [("function", "checks", 0)]
