"""Completion shaping: one line or a block, where the model's text is cut, and the ghost text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsp.shaping import CursorContext, cut_point, shape_completion, wants_multiline


def python(
    prefix: str, suffix: str = "", *, tab_size: int = 4, insert_spaces: bool = True
) -> CursorContext:
    return CursorContext(prefix, suffix, tab_size, insert_spaces, "python")


def c_code(prefix: str, suffix: str = "") -> CursorContext:
    return CursorContext(prefix, suffix, language="c")


def block(text: str, context: CursorContext) -> str:
    """The shaped block, for the cases where only the result matters."""
    return shape_completion(text, context, multiline=True)


# -- CursorContext --------------------------------------------------------------------------


def test_line_prefix_and_suffix_are_the_cursor_line() -> None:
    context = python("import os\n\ndef f(x", "):\n    pass\n")
    assert context.line_prefix == "def f(x"
    assert context.line_suffix == "):"


def test_empty_document() -> None:
    context = python("", "")
    assert (context.line_prefix, context.line_suffix) == ("", "")


def test_crlf_lines_hold_no_carriage_return() -> None:
    context = python("a = 1\r\n    b = f(", ")\r\nc = 2\r\n")
    assert context.line_prefix == "    b = f("
    assert context.line_suffix == ")"


def test_cursor_right_after_crlf_is_on_an_empty_line() -> None:
    context = python("a = 1\r\n", "\r\nb = 2")
    assert (context.line_prefix, context.line_suffix) == ("", "")


def test_lone_carriage_return_is_a_line_break() -> None:
    context = python("a = 1\rb = ", "2\rc")
    assert (context.line_prefix, context.line_suffix) == ("b = ", "2")


def test_astral_characters_are_single_characters() -> None:
    context = python("s = '😀'\nt = '😀", "😀'\n")
    assert context.line_prefix == "t = '😀"
    assert context.line_suffix == "😀'"


def test_tab_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tab_size"):
        CursorContext("", "", tab_size=0)


# -- wants_multiline ------------------------------------------------------------------------


def test_mid_line_cursor_wants_one_line() -> None:
    assert not wants_multiline(python("x = foo(", "a, b)"))


def test_closing_punctuation_after_the_cursor_still_allows_a_block() -> None:
    assert wants_multiline(python("x = foo(", ")"))
    assert wants_multiline(CursorContext("f(() => {", "});", language="javascript"))
    assert wants_multiline(python("    ", "  "))


def test_empty_line_wants_a_block() -> None:
    assert wants_multiline(python("def f():\n    return 1\n\n", "\n"))


def test_indentation_only_line_wants_a_block() -> None:
    assert wants_multiline(python("def f():\n    ", "\n"))


def test_after_python_def_wants_a_block() -> None:
    assert wants_multiline(python("def f():", "\n"))
    assert wants_multiline(python("    if x:  ", ""))


@pytest.mark.parametrize("line", ["int f() {", "call(", "xs = [", "const f = () =>"])
def test_bracket_openers_want_a_block(line: str) -> None:
    assert wants_multiline(CursorContext(line, "", language="javascript"))


def test_keyword_openers_want_a_block_where_they_are_keywords() -> None:
    assert wants_multiline(CursorContext("if x then", "", language="lua"))
    assert wants_multiline(CursorContext("xs.each do", "", language="ruby"))
    assert not wants_multiline(python("result = do", ""))  # `download` being typed


def test_colon_opens_a_block_only_in_python() -> None:
    assert not wants_multiline(CursorContext("case 1:", "", language="c"))


def test_started_line_wants_one_line() -> None:
    assert not wants_multiline(python("x = ", ""))


@pytest.mark.parametrize(
    ("language", "line"),
    [
        ("python", "x = 1  # see "),
        ("c", "int x; // see ("),
        ("lua", "-- if x then"),
        ("go", "// {"),
    ],
)
def test_line_comment_wants_one_line(language: str, line: str) -> None:
    assert not wants_multiline(CursorContext(line, "", language=language))


def test_comment_marker_inside_a_string_is_not_a_comment() -> None:
    assert wants_multiline(python("s = '#' + f(", ")"))
    assert wants_multiline(python('s = "a\\"#" + f(', ")"))


def test_rust_lifetimes_do_not_hide_a_comment() -> None:
    assert not wants_multiline(CursorContext("fn f<'a>(x: &'a str) { // (", "", language="rust"))
    assert wants_multiline(CursorContext("fn f<'a>(x: &'a str) {", "", language="rust"))


def test_modes_always_and_never_ignore_the_cursor() -> None:
    mid_line = python("x = foo(", "a, b)")
    assert wants_multiline(mid_line, "always")
    assert not wants_multiline(python("def f():", ""), "never")


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="sometimes"):
        wants_multiline(python("", ""), "sometimes")


# -- cut_point: one line --------------------------------------------------------------------


def test_single_line_waits_for_a_line_break() -> None:
    assert cut_point("foo(a, b", python("x = "), multiline=False) is None


def test_single_line_cuts_at_the_first_line_break() -> None:
    assert cut_point("foo()\nbar()\n", python("x = "), multiline=False) == 5
    assert cut_point("foo()\r\nbar()", python("x = "), multiline=False) == 5
    assert cut_point("\nbar()", python("x = "), multiline=False) == 0


# -- cut_point: a block ---------------------------------------------------------------------


def test_python_block_ends_at_the_dedent() -> None:
    text = "\n    return 1\n\ndef g():\n    pass\n"
    assert cut_point(text, python("def f():", "\n"), multiline=True) == 14
    assert block(text, python("def f():", "\n")) == "\n    return 1"


def test_block_from_an_indented_empty_line_ends_below_its_level() -> None:
    context = python("def f(x):\n    ", "\n")
    assert block("y = x\n    return y\nprint(f(1))\n", context) == "y = x\n    return y"


def test_block_level_counts_indentation_the_model_writes_on_the_cursor_line() -> None:
    context = python("def f(x):\n", "\n")
    assert block("    return x\nprint(f(1))\n", context) == "    return x"


def test_nested_blocks_are_kept() -> None:
    text = "\n    for x in xs:\n        if x:\n            yield x\n    return\nf()\n"
    assert block(text, python("def f(xs):", "")) == (
        "\n    for x in xs:\n        if x:\n            yield x\n    return"
    )


def test_body_at_the_opener_level_ends_the_block_at_once() -> None:
    assert cut_point("\nx = 1\n", python("def f():", ""), multiline=True) == 0


def test_block_undecided_while_lines_stay_inside() -> None:
    context = python("def f():", "")
    assert cut_point("", context, multiline=True) is None
    assert cut_point("\n    x = 1\n    ", context, multiline=True) is None
    assert cut_point("\n    x = 1\n    retu", context, multiline=True) is None


def test_cut_waits_for_the_first_line_to_show_the_block_level() -> None:
    assert cut_point("  ", python("", ""), multiline=True) is None


def test_c_closing_brace_belongs_to_the_completion_when_the_suffix_lacks_it() -> None:
    text = "\n    return 1;\n}\n\nint g() {"
    assert block(text, c_code("int f() {", "\n")) == "\n    return 1;\n}"


def test_c_closing_brace_is_dropped_when_the_suffix_has_it() -> None:
    text = "\n    return 1;\n}\n\nint g() {"
    assert block(text, c_code("int f() {", "\n}\n")) == "\n    return 1;"


def test_c_closing_brace_on_the_cursor_line_counts_as_the_suffix_closing() -> None:
    assert block("\n    return 1;\n}\n", c_code("int f() {", "}\n")) == "\n    return 1;"


def test_c_brace_closing_an_outer_block_does_not_close_the_new_one() -> None:
    context = c_code("int f() {\n    if (x) {", "\n}\n")
    assert block("\n        y();\n    }\n    z();\n", context) == "\n        y();\n    }"


def test_c_closing_brace_waits_for_its_line_to_end() -> None:
    assert cut_point("\n    y();\n}", c_code("int f() {", "\n"), multiline=True) is None


def test_c_else_keeps_the_block_going() -> None:
    text = "\n    if (x) {\n        y();\n    } else {\n        z();\n    }\n}\n"
    assert block(text, c_code("int f() {", "\n}\n")) == (
        "\n    if (x) {\n        y();\n    } else {\n        z();\n    }"
    )


def test_c_inner_brace_at_the_block_level_is_kept() -> None:
    context = c_code("int f() {\n    ", "\n}\n")
    assert block("if (x) {\n        y();\n    }\n", context) == "if (x) {\n        y();\n    }"


def test_line_repeating_the_suffix_ends_the_block() -> None:
    context = python("def f(x):\n    ", "\n    return x\n")
    assert block("y = x + 1\n    return x\n", context) == "y = x + 1"


def test_suffix_repeat_waits_for_the_whole_line() -> None:
    context = python("def f(x):\n    ", "\n    return x\n")
    assert cut_point("y = 1\n    return x", context, multiline=True) is None


def test_suffix_repeat_skips_blank_suffix_lines() -> None:
    context = python("def f(x):\n    ", "\n\n   \n    return x\n")
    assert block("y = x + 1\n    return x\n", context) == "y = x + 1"


def test_punctuation_line_repeats_the_suffix_only_at_the_same_depth() -> None:
    context = c_code("void f() {\n    ", "\n}\n")
    text = "while (x) {\n        y();\n    }\n    z();\n"
    assert block(text, context) == "while (x) {\n        y();\n    }\n    z();"


def test_python_top_level_blank_line_ends_the_definition() -> None:
    text = "def f():\n    return 1\n\n\ndef g():\n    pass\n"
    assert cut_point(text, python("import os\n\n", ""), multiline=True) == 21
    assert block(text, python("import os\n\n", "")) == "def f():\n    return 1"


def test_blank_lines_inside_a_function_do_not_end_it() -> None:
    text = "x = 1\n\n    return x\n"
    assert block(text, python("def f():\n    ", "")) == "x = 1\n\n    return x"


def test_blank_lines_before_any_code_do_not_end_the_completion() -> None:
    assert block("\n\ndef g():\n    pass", python("x = 1\n", "")) == "\n\ndef g():\n    pass"


def test_line_written_three_times_keeps_one_copy() -> None:
    context = python("def f():\n    ", "")
    assert block("x += 1\n    x += 1\n    x += 1\n    x += 1\n", context) == "x += 1"


def test_line_written_twice_is_kept() -> None:
    context = python("def f():\n    ", "")
    assert cut_point("x += 1\n    x += 1\n    y = 2\n", context, multiline=True) is None


def test_blank_line_breaks_a_run_of_repeats() -> None:
    context = python("def f():\n    ", "")
    text = "x += 1\n    x += 1\n\n    x += 1\n    y = 2\n"
    assert cut_point(text, context, multiline=True) is None


def test_repeats_compare_tabs_and_spaces_by_width() -> None:
    context = python("def f():", "")
    text = "\n\tx += 1\n    x += 1\n\tx += 1\n"
    assert block(text, context) == "\n    x += 1"


def test_started_line_block_ends_below_the_cursor_line() -> None:
    context = python("def f():\n    x = ", "")
    text = "g(\n        1,\n    )\n    return x\nprint()\n"
    assert block(text, context) == "g(\n        1,\n    )\n    return x"


def test_block_in_a_crlf_document() -> None:
    context = python("def f(x):\r\n    ", "\r\n    return x\r\n")
    assert wants_multiline(context)
    assert block("y = x\r\n    return x\r\n", context) == "y = x"


def test_generated_crlf_cuts_before_the_carriage_return() -> None:
    text = "\r\n    return 1\r\ndef g():"
    assert cut_point(text, python("def f():", ""), multiline=True) == 14


# -- shape_completion -----------------------------------------------------------------------


def test_single_line_shape_drops_the_rest_and_trailing_spaces() -> None:
    assert shape_completion("foo(1)   \nbar()", python("x = "), multiline=False) == "foo(1)"


def test_empty_and_whitespace_completions_shape_to_nothing() -> None:
    context = python("def f():\n    ", "")
    for multiline in (False, True):
        assert shape_completion("", context, multiline) == ""
        assert shape_completion(" \t \n  \n", context, multiline) == ""
        assert shape_completion("\nfoo()", context, multiline=False) == ""


def test_inner_blank_lines_are_kept() -> None:
    assert (
        block("\n    a = 1\n\n    b = 2\n\n", python("def f():", "")) == "\n    a = 1\n\n    b = 2"
    )


def test_duplicate_closing_parenthesis_is_dropped() -> None:
    context = python("print(", ")")
    assert shape_completion("foo(x))", context, multiline=False) == "foo(x)"


def test_duplicate_closing_bracket_is_dropped() -> None:
    context = python("xs = [1, ", "]")
    assert shape_completion("2, 3]", context, multiline=False) == "2, 3"


def test_duplicate_quote_and_parenthesis_are_dropped() -> None:
    context = python('print("hel', '")')
    assert shape_completion('lo")', context, multiline=False) == "lo"


def test_balanced_closers_are_kept() -> None:
    context = python("print(", ")")
    assert shape_completion("foo(x)", context, multiline=False) == "foo(x)"
    assert shape_completion("'a'", python("f(", "')"), multiline=False) == "'a'"


def test_closers_the_suffix_does_not_start_with_are_kept() -> None:
    assert shape_completion("x)", python("f(", "]"), multiline=False) == "x)"
    assert shape_completion("x))", python("f(g(", ")"), multiline=False) == "x))"


def test_duplicate_closer_in_a_block_is_dropped() -> None:
    context = python("call(", ")")
    assert block("\n    a,\n    b)", context) == "\n    a,\n    b"


def test_tabs_become_spaces_after_the_first_line() -> None:
    context = python("def f():", "", tab_size=2)
    assert block("\n\tif x:\n\t\treturn 1", context) == "\n  if x:\n    return 1"


def test_spaces_become_tabs_after_the_first_line() -> None:
    context = python("def f():", "", insert_spaces=False)
    text = "\n    if x:\n        return 1\n      pass"
    assert block(text, context) == "\n\tif x:\n\t\treturn 1\n\t  pass"


def test_first_line_indentation_is_left_alone() -> None:
    context = python("", "", insert_spaces=False)
    assert block("    x = 1\n    y = 2", context) == "    x = 1\n\ty = 2"


def test_generated_crlf_becomes_newline() -> None:
    assert (
        block("\r\n    a = 1\r\n    b = 2\r\n", python("def f():", "")) == "\n    a = 1\n    b = 2"
    )


def test_astral_characters_in_the_document_and_the_completion() -> None:
    context = python("s = '😀'\ndef f():\n    t = '😀", "'\n    return t  # 😀\n")
    assert context.line_prefix == "    t = '😀"
    assert not wants_multiline(context)
    assert shape_completion("😀😀'\nx", context, multiline=False) == "😀😀"
    text = "😀'\n    return t  # 😀\n"
    assert cut_point(text, context, multiline=True) == 2
    assert block(text, context) == "😀"


# -- properties -----------------------------------------------------------------------------

CODE_CHARACTERS = "ab_:=(){}[]\"'`#/ \t\n\r😀\x0c"
code = st.text(alphabet=CODE_CHARACTERS, max_size=60)
contexts = st.builds(
    CursorContext,
    prefix=code,
    suffix=code,
    tab_size=st.integers(min_value=1, max_value=8),
    insert_spaces=st.booleans(),
    language=st.sampled_from(["python", "c", "javascript", "lua", "rust", "ruby", "unknown"]),
)


@given(code, contexts, st.booleans())
def test_cut_point_is_inside_the_text(text: str, context: CursorContext, multiline: bool) -> None:
    cut = cut_point(text, context, multiline)
    assert cut is None or 0 <= cut <= len(text)


@given(code, contexts)
def test_single_line_shape_has_no_line_break(text: str, context: CursorContext) -> None:
    shaped = shape_completion(text, context, multiline=False)
    assert "\n" not in shaped
    assert "\r" not in shaped


@given(code, contexts, st.booleans())
def test_shaping_is_idempotent(text: str, context: CursorContext, multiline: bool) -> None:
    shaped = shape_completion(text, context, multiline)
    assert shape_completion(shaped, context, multiline) == shaped


@given(code, contexts, st.booleans())
def test_context_lines_hold_no_line_break(
    text: str, context: CursorContext, multiline: bool
) -> None:
    for line in (context.line_prefix, context.line_suffix):
        assert "\n" not in line
        assert "\r" not in line
    assert isinstance(wants_multiline(context), bool)


@given(code, contexts, st.booleans())
def test_streaming_decides_the_same_cut(text: str, context: CursorContext, multiline: bool) -> None:
    """The first cut the generator sees, token by token, is the cut of the whole text."""
    for end in range(len(text) + 1):
        cut = cut_point(text[:end], context, multiline)
        if cut is not None:
            assert cut_point(text, context, multiline) == cut
            return


plain_code = st.text(alphabet="ab_:=()# \n", max_size=60)


@given(plain_code, plain_code, plain_code, st.booleans())
def test_shape_is_a_trimmed_prefix_of_the_text(
    text: str, prefix: str, suffix: str, multiline: bool
) -> None:
    """Without tabs, carriage returns or closers after the cursor, shaping only cuts and trims."""
    context = CursorContext(prefix, "\n" + suffix)
    cut = cut_point(text, context, multiline)
    kept = text if cut is None else text[:cut]
    assert shape_completion(text, context, multiline) == kept.rstrip()
