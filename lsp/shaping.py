"""Decide a completion's shape (one line or a block) and cut the model's raw text to it.

A fill-in-the-middle model does not know where the user wants it to stop: it writes until its
token budget runs out, past the end of the block, repeating the code after the cursor or looping
on one line. Like Copilot, Tabby and Continue, the server therefore decides up front whether to
offer one line or a block (`wants_multiline`), lets the text generator stop as soon as the text
so far decides where the completion ends (`cut_point`, called after every token), and cleans
what is kept into the ghost text the editor shows (`shape_completion`).

Plain string work on the document text; no project imports. Line breaks are "\\n", "\\r\\n" or a
lone "\\r" (what LSP counts as one); the shaped text uses "\\n". Indexes are code points.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["CursorContext", "cut_point", "shape_completion", "wants_multiline"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BRACKET_PAIRS = {")": "(", "]": "[", "}": "{"}
_QUOTES = "\"'`"
# After the cursor, only what editors auto-insert or statements end with still allows a block.
_LINE_END_PUNCTUATION = frozenset(")]}" + _QUOTES + ":;,")
_BLOCK_OPENERS = ("{", "(", "[", "=>")
_OPENER_WORD = re.compile(r"(?:^|\W)(?:do|then)$")
# Elsewhere a line ending in "do" is more likely a name being typed (`x = do` before `download`).
_WORD_OPENER_LANGUAGES = frozenset({"ruby", "lua", "elixir", "shellscript", "bash", "sh", "zsh"})
_HASH_COMMENTS = ("python", "shellscript", "bash", "sh", "zsh", "ruby", "perl", "r", "yaml")
_SLASH_COMMENTS = ("javascript", "typescript", "javascriptreact", "typescriptreact", "go", "rust")
_MORE_SLASH_COMMENTS = ("java", "c", "cpp", "csharp", "kotlin", "swift", "scala", "dart", "zig")
_COMMENT_MARKERS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((*_HASH_COMMENTS, "toml", "makefile", "dockerfile", "cmake"), ("#",)),
    **dict.fromkeys((*_SLASH_COMMENTS, *_MORE_SLASH_COMMENTS), ("//",)),
    **dict.fromkeys(("lua", "sql", "haskell", "elm", "ada"), ("--",)),
    "php": ("//", "#"),
}
# Unknown languages: both common markers. A false "in a comment" only costs a block offer.
_DEFAULT_COMMENT_MARKERS = ("//", "#")
# In Rust an apostrophe also starts a lifetime (`'a`), which never closes like a string.
_APOSTROPHE_NOT_A_QUOTE = frozenset({"rust"})


@dataclass(frozen=True)
class CursorContext:
    """The document around the cursor and the client's indentation settings."""

    prefix: str
    suffix: str
    tab_size: int = 4
    insert_spaces: bool = True
    language: str = "python"

    def __post_init__(self) -> None:
        if self.tab_size < 1:
            raise ValueError(f"tab_size must be at least 1, got {self.tab_size}")

    @property
    def line_prefix(self) -> str:
        """The text of the cursor's line before the cursor (never holds a line break)."""
        line_start = max(self.prefix.rfind("\n"), self.prefix.rfind("\r")) + 1
        return self.prefix[line_start:]

    @property
    def line_suffix(self) -> str:
        """The text of the cursor's line after the cursor (never holds a line break)."""
        line_break = _LINE_BREAK.search(self.suffix)
        return self.suffix if line_break is None else self.suffix[: line_break.start()]


def wants_multiline(context: CursorContext, mode: str = "auto") -> bool:
    """Whether to offer a block ("always", "never", or "auto": judge from the cursor's line)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if mode != "auto":
        raise ValueError(f"unknown multiline mode {mode!r}: expected auto, always or never")
    line_prefix = context.line_prefix
    if _is_mid_line(context.line_suffix) or _in_line_comment(line_prefix, context.language):
        return False
    return not line_prefix.strip() or _ends_with_block_opener(line_prefix, context.language)


def cut_point(text: str, context: CursorContext, multiline: bool) -> int | None:
    """Where the completion ends within `text` if the text so far decides it, else None.

    One line ends at the first line break. A block ends, at the first of these, before:
    a line indented less than the block (a closing-bracket line there is kept unless the
    suffix already closes it); a line equal to the code after the cursor (the rest of its line or
    the next non-blank line); in Python at top level from a blank cursor line, a blank line
    before a new top-level line; the second copy of a line written three times in a row.
    """
    if not multiline:
        line_break = _LINE_BREAK.search(text)
        return None if line_break is None else line_break.start()
    return _block_cut_point(list(_split_lines(text)), context)


def shape_completion(text: str, context: CursorContext, multiline: bool) -> str:
    """The ghost text to show: `text` cut to its shape, trimmed, and indented like the editor."""
    cut = cut_point(text, context, multiline)
    kept = text if cut is None else text[:cut]
    kept = _LINE_BREAK.sub("\n", kept).rstrip()
    kept = _drop_duplicate_closers(kept, context.line_suffix)
    kept = _normalize_indentation(kept, context)
    return kept if kept.strip() else ""


# -- the cursor's line ----------------------------------------------------------------------


def _is_mid_line(line_suffix: str) -> bool:
    return any(not char.isspace() and char not in _LINE_END_PUNCTUATION for char in line_suffix)


def _in_line_comment(line_prefix: str, language: str) -> bool:
    """Whether a comment marker outside a string literal starts before the cursor."""
    markers = _COMMENT_MARKERS.get(language, _DEFAULT_COMMENT_MARKERS)
    quotes = _QUOTES.replace("'", "") if language in _APOSTROPHE_NOT_A_QUOTE else _QUOTES
    open_quote = ""
    index = 0
    while index < len(line_prefix):
        char = line_prefix[index]
        if open_quote:
            if char == "\\":
                index += 1  # the escaped character cannot close the string
            elif char == open_quote:
                open_quote = ""
        elif char in quotes:
            open_quote = char
        elif line_prefix.startswith(markers, index):
            return True
        index += 1
    return False


def _ends_with_block_opener(line_prefix: str, language: str) -> bool:
    code = line_prefix.rstrip()
    if code.endswith(_BLOCK_OPENERS):
        return True
    if language in _WORD_OPENER_LANGUAGES:
        return _OPENER_WORD.search(code) is not None
    return language == "python" and code.endswith(":")


def _indent_width(line: str, tab_size: int) -> int:
    indentation = line[: len(line) - len(line.lstrip(" \t"))]
    return len(indentation.expandtabs(tab_size))


# -- where a block ends ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    text: str
    end: int  # where the line's break starts in the generated text (its length if none yet)
    complete: bool  # a line break follows, so the line will not grow


def _split_lines(text: str) -> Iterator[_Line]:
    start = 0
    for line_break in _LINE_BREAK.finditer(text):
        yield _Line(text[start : line_break.start()], line_break.start(), True)
        start = line_break.end()
    yield _Line(text[start:], len(text), False)


def _block_indent(lines: list[_Line], context: CursorContext) -> int | None:
    """The indentation the block's lines keep; None while the text does not show it yet.

    From a blank cursor line the block sits where its first line starts (the cursor line's
    indentation plus what the model wrote on it). After a block opener the block is the first
    generated line below, and must be deeper than the cursor line, or that line already ends it.
    Otherwise the model finishes a started line, and the block is the cursor line's level.
    """
    line_prefix, tab_size = context.line_prefix, context.tab_size
    cursor_indent = _indent_width(line_prefix, tab_size)
    first = lines[0]
    if not line_prefix.strip():
        if first.text.strip():
            return _indent_width(line_prefix + first.text, tab_size)
        return cursor_indent if first.complete else None
    if not _ends_with_block_opener(line_prefix, context.language):
        return cursor_indent
    for line in lines[1:]:
        if line.text.strip():
            return max(_indent_width(line.text, tab_size), cursor_indent + 1)
    return None


def _next_suffix_lines(context: CursorContext) -> list[tuple[int, str]]:
    """The code right after the cursor, as (indentation width, stripped text) pairs.

    The rest of the cursor's line when it is not blank, then the first non-blank line below.
    """
    tab_size = context.tab_size
    found = []
    if context.line_suffix.strip():
        found.append((_indent_width(context.line_prefix, tab_size), context.line_suffix.strip()))
    lines = _split_lines(context.suffix)  # lazily: the suffix may be a long file
    next(lines)  # the cursor's line
    below = next((line.text for line in lines if line.text.strip()), None)
    if below is not None:
        found.append((_indent_width(below, tab_size), below.strip()))
    return found


def _block_cut_point(lines: list[_Line], context: CursorContext) -> int | None:
    block_indent = _block_indent(lines, context)
    if block_indent is None:
        return None
    suffix_lines = _next_suffix_lines(context)
    top_level_python = (
        context.language == "python" and not context.line_prefix.strip() and block_indent == 0
    )
    first = lines[0]
    content_end = first.end if first.text.strip() else None  # end of the last line with code
    for index in range(1, len(lines)):
        line = lines[index]
        stripped = line.text.strip()
        if not stripped:
            continue
        cut_before = lines[index - 1].end
        indent = _indent_width(line.text, context.tab_size)
        if indent < block_indent:
            next_suffix = suffix_lines[0] if suffix_lines else None
            decision = _dedented_line_cut(line, cut_before, next_suffix, context)
            if decision != _BLOCK_GOES_ON:
                return decision
        previous_blank = not lines[index - 1].text.strip()
        if top_level_python and previous_blank and content_end is not None:
            return content_end  # a second top-level definition starts
        if not line.complete:
            return None  # the rules below compare whole lines
        if any(_repeats(suffix_line, indent, stripped) for suffix_line in suffix_lines):
            return cut_before
        if _is_third_copy(lines, index, context):
            return lines[index - 2].end  # a loop: keep one copy
        content_end = line.end
    return None


_BLOCK_GOES_ON = -1  # never a cut: a dedented line that does not end the block


def _dedented_line_cut(
    line: _Line, cut_before: int, suffix_line: tuple[int, str] | None, context: CursorContext
) -> int | None:
    """Where a line indented less than the block ends the completion.

    A closing-bracket line ("}", "})") belongs to the completion unless the suffix's next line
    closes the block at the same depth; "} else {" opens the next block, so the block goes on.
    """
    stripped = line.text.strip()
    if not stripped.startswith(tuple(_BRACKET_PAIRS)):
        return cut_before
    indent = _indent_width(line.text, context.tab_size)
    if suffix_line is not None:
        suffix_indent, suffix_text = suffix_line
        if suffix_indent == indent and suffix_text[0] == stripped[0]:
            return cut_before
    if not line.complete:
        return None
    if _ends_with_block_opener(stripped, context.language):
        return _BLOCK_GOES_ON
    return line.end


def _is_third_copy(lines: list[_Line], index: int, context: CursorContext) -> bool:
    """Whether the (non-blank) line at `index` ends a run of three identical lines.

    Lines compare by indentation width and text, as shaping re-indents them; the first line is
    whole only together with the cursor line.
    """
    if index < 2:
        return False
    texts = [line.text for line in lines[index - 2 : index + 1]]
    if index == 2:
        texts[0] = context.line_prefix + texts[0]
    return len({(_indent_width(text, context.tab_size), text.strip()) for text in texts}) == 1


def _repeats(suffix_line: tuple[int, str], indent: int, stripped: str) -> bool:
    """Whether a generated line is the suffix's next line again.

    Lines of bare punctuation ("}", ");") are common, so they must also sit at the same depth.
    """
    suffix_indent, suffix_text = suffix_line
    if stripped != suffix_text:
        return False
    has_word = any(char.isalnum() or char == "_" for char in stripped)
    return has_word or indent == suffix_indent


# -- cleaning what is kept ------------------------------------------------------------------


def _drop_duplicate_closers(completion: str, line_suffix: str) -> str:
    """Drop trailing closers that close what the prefix opened when the line suffix has them.

    Repeated until nothing changes, so shaping a shaped completion changes nothing.
    """
    while True:
        unmatched = _trailing_unmatched_closers(completion)
        if not unmatched or not line_suffix.startswith(unmatched):
            return completion
        completion = completion[: -len(unmatched)].rstrip()


def _trailing_unmatched_closers(text: str) -> str:
    """The completion's last characters that close brackets or strings opened before it."""
    unmatched = [False] * len(text)
    open_brackets: list[str] = []
    quote_counts = dict.fromkeys(_QUOTES, 0)
    for index, char in enumerate(text):
        if char in "([{":
            open_brackets.append(char)
        elif char in _BRACKET_PAIRS:
            if open_brackets and open_brackets[-1] == _BRACKET_PAIRS[char]:
                open_brackets.pop()
            else:
                unmatched[index] = True
        elif char in _QUOTES:
            # An odd quote at the very end cannot open a string: it closes the prefix's one.
            quote_counts[char] += 1
            unmatched[index] = quote_counts[char] % 2 == 1
    start = len(text)
    while start > 0 and unmatched[start - 1]:
        start -= 1
    return text[start:]


def _normalize_indentation(text: str, context: CursorContext) -> str:
    """Indent lines after the first as the editor does; the first continues the cursor line."""
    first, *rest = text.split("\n")
    return "\n".join([first, *(_reindent(line, context) for line in rest)])


def _reindent(line: str, context: CursorContext) -> str:
    width = _indent_width(line, context.tab_size)
    if context.insert_spaces:
        indentation = " " * width
    else:
        tabs, spaces = divmod(width, context.tab_size)
        indentation = "\t" * tabs + " " * spaces
    return indentation + line.lstrip(" \t")
