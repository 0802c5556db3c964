"""OpenBuffer: incremental re-parses always equal a fresh parse."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.buffers import OpenBuffer
from indexer.chunks import parse_source

BASE = '''import os

@decorator(1)
def alpha(x, y):
    """doc é 😀"""
    return x + y


class Beta:
    def gamma(self):
        return [i for i in range(3)]

    @staticmethod
    def delta():
        pass

value = alpha(1, 2)
'''
FRAGMENTS = [
    "def ",
    "class ",
    ":",
    "\n",
    "    ",
    "(",
    ")",
    "x",
    "é",
    "😀",
    '"""',
    "#",
    "return 1\n",
    "@d\n",
    " ",
    "pass\n",
    "if x:\n",
    "'",
    "\n\n",
    "{",
    "}",
    ";",
]


def assert_matches_fresh(buffer: OpenBuffer) -> None:
    fresh, tree = parse_source(buffer.source, buffer.language)
    assert buffer.parsed.chunks == fresh.chunks
    assert buffer.parsed.has_errors == fresh.has_errors
    assert buffer.parsed.source == buffer.source
    if tree is not None:
        assert buffer.tree is not None
        assert str(buffer.tree.root_node) == str(tree.root_node)


def random_edit(rng: random.Random, buffer: OpenBuffer) -> None:
    text = buffer.text
    start = rng.randint(0, len(text))
    end = rng.randint(start, min(len(text), start + 12))
    insert = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.5:
        buffer.replace(text[:start] + insert + text[end:])
    else:  # by byte offsets, as an LSP incremental change arrives
        start_byte = len(text[:start].encode())
        end_byte = len(text[:end].encode())
        buffer.edit(start_byte, end_byte, insert.encode())
    assert buffer.text == text[:start] + insert + text[end:]


@pytest.mark.parametrize("language", ["python", "javascript", "rust", "go", "c", None])
def test_seeded_random_edits_match_a_fresh_parse(language: str | None) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        buffer = OpenBuffer(BASE, language)
        assert_matches_fresh(buffer)
        for step in range(15):
            random_edit(rng, buffer)
            assert_matches_fresh(buffer)
            assert buffer.reparses == step + 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=400),
            st.integers(min_value=0, max_value=20),
            st.lists(
                st.sampled_from([*"abcdef():=\n #'\"@é😀\t{}", "def ", "class ", "    "]),
                max_size=6,
            ).map("".join),
        ),
        max_size=12,
    )
)
def test_hypothesis_edits_match_a_fresh_parse(edits: list[tuple[int, int, str]]) -> None:
    buffer = OpenBuffer(BASE, "python")
    expected = BASE
    for position, length, insert in edits:
        start = min(position, len(expected))
        end = min(start + length, len(expected))
        expected = expected[:start] + insert + expected[end:]
        buffer.replace(expected)
        assert buffer.text == expected
        assert_matches_fresh(buffer)


def test_typing_a_function_character_by_character() -> None:
    buffer = OpenBuffer("import os\n\n", "python")
    for char in "def typed(a, b):\n    return a * b\n":
        buffer.edit(len(buffer.source), len(buffer.source), char.encode())
        assert_matches_fresh(buffer)
    names = [c.name for c in buffer.parsed.chunks if c.kind == "function"]
    assert names == ["typed"]


def test_replace_with_same_text_and_with_empty() -> None:
    buffer = OpenBuffer(BASE, "python")
    buffer.replace(BASE)
    assert buffer.text == BASE
    assert_matches_fresh(buffer)
    buffer.replace("")
    assert buffer.source == b""
    assert buffer.parsed.chunks == ()
    buffer.replace(BASE)
    assert_matches_fresh(buffer)


def test_replace_between_characters_sharing_leading_bytes() -> None:
    # "é" (c3 a9) and "è" (c3 a8): the common byte prefix ends inside a character
    buffer = OpenBuffer("x = 'é'\n", "python")
    buffer.replace("x = 'è'\n")
    assert buffer.text == "x = 'è'\n"
    assert_matches_fresh(buffer)
    buffer.replace("x = '😀'\n")
    buffer.replace("x = '😁'\n")
    assert buffer.text == "x = '😁'\n"
    assert_matches_fresh(buffer)


def test_text_buffer_without_grammar() -> None:
    buffer = OpenBuffer("# Title\n\nbody\n", None)
    assert buffer.tree is None
    buffer.replace("# Title\n\nbody\n\nmore\n")
    assert [c.start_line for c in buffer.parsed.chunks] == [0, 2, 4]
    assert_matches_fresh(buffer)


@pytest.mark.parametrize(
    ("start", "end"), [(-1, 0), (0, 10_000), (5, 4), (0, len(BASE.encode()) + 1)]
)
def test_edit_out_of_range_raises(start: int, end: int) -> None:
    buffer = OpenBuffer(BASE, "python")
    before = buffer.parsed
    with pytest.raises(ValueError, match="outside"):
        buffer.edit(start, end, b"x")
    assert buffer.text == BASE
    assert buffer.parsed is before
    assert buffer.reparses == 0


def test_edit_at_the_very_end_is_allowed() -> None:
    buffer = OpenBuffer("x = 1\n", "python")
    size = len(buffer.source)
    buffer.edit(size, size, b"y = 2\n")
    assert buffer.text == "x = 1\ny = 2\n"
    assert_matches_fresh(buffer)


def test_edit_splitting_a_character_raises_and_keeps_the_buffer() -> None:
    text = "s = '😀'\n"
    buffer = OpenBuffer(text, "python")
    emoji_at = text.encode().index("😀".encode())
    with pytest.raises(ValueError):  # UnicodeDecodeError is a ValueError
        buffer.edit(emoji_at + 1, emoji_at + 2, b"")
    with pytest.raises(UnicodeDecodeError):
        buffer.edit(emoji_at, emoji_at, b"\xf0")
    with pytest.raises(UnicodeDecodeError):
        buffer.edit(0, 0, b"\xff")
    assert buffer.text == text
    assert buffer.reparses == 0
    assert_matches_fresh(buffer)
    buffer.edit(emoji_at, emoji_at + 4, "👋".encode())  # whole characters are fine
    assert buffer.text == "s = '👋'\n"
    assert_matches_fresh(buffer)


def test_multiline_edits_keep_points_right() -> None:
    buffer = OpenBuffer("def a():\n    pass\n\n\ndef b():\n    pass\n", "python")
    buffer.replace("def a():\n    pass\n\n\nclass 😀K:\n    pass\n\n\ndef b():\n    pass\n")
    assert_matches_fresh(buffer)
    buffer.replace("def b():\n    pass\n")
    assert_matches_fresh(buffer)
    assert [c.name for c in buffer.parsed.chunks] == ["b"]
