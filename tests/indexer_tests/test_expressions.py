"""expressions_of: one-line calls, decorators and imports counted per file."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from indexer.chunks import parse_source
from indexer.expressions import MAX_BYTES, MIN_BYTES, expressions_of


def exprs(source: bytes, language: str | None) -> Counter[str]:
    _, tree = parse_source(source, language)
    return expressions_of(tree, language)


def test_python_calls_decorators_and_imports() -> None:
    source = (
        b"import os\n"
        b"from typing import Any\n"
        b'@app.route("/x")\n'
        b"def f():\n"
        b'    print("hello world")\n'
        b'    print("hello world")\n'
        b"    g()\n"  # shorter than MIN_BYTES
        b"    value = compute(\n"  # spans lines: never a one-line draft
        b"        1,\n"
        b"    )\n"
    )
    assert exprs(source, "python") == Counter(
        {
            'print("hello world")': 2,
            "import os": 1,
            "from typing import Any": 1,
            '@app.route("/x")': 1,
            'app.route("/x")': 1,
        }
    )


def test_length_bounds() -> None:
    short = "f(1)"
    assert len(short) < MIN_BYTES
    long_call = "f(" + "x" * MAX_BYTES + ")"
    exact = "f(" + "y" * (MAX_BYTES - 3) + ")"
    assert len(exact) == MAX_BYTES
    source = f"{short}\n{long_call}\n{exact}\n".encode()
    assert exprs(source, "python") == Counter({exact: 1})


def test_multibyte_text_is_measured_in_bytes() -> None:
    call = 'f("😀")'  # 6 characters, 9 bytes
    assert len(call) < MIN_BYTES <= len(call.encode())
    assert exprs(f"{call}\n".encode(), "python") == Counter({call: 1})


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        ("javascript", b'import x from "y";\nconsole.log("a");\n', {'console.log("a")'}),
        ("typescript", b'console.log("typed");\n', {'console.log("typed")'}),
        ("rust", b'use std::io;\nfn m() { println!("x"); }\n', {"use std::io;", 'println!("x")'}),
        ("go", b'package m\nimport "net/http"\nfunc m() { fmt.Println(1) }\n', {'"net/http"'}),
        ("java", b"class A { @Override void m() { System.out.println(1); } }\n", {"@Override"}),
        ("c", b'int main() { printf("hi"); }\n', {'printf("hi")'}),
        ("cpp", b"int main() { std::sort(a, b); }\n", {"std::sort(a, b)"}),
    ],
)
def test_other_languages(language: str, source: bytes, expected: set[str]) -> None:
    found = exprs(source, language)
    assert expected <= set(found), found


@pytest.mark.parametrize("language", ["c", "cpp"])
def test_c_includes_are_counted(language: str) -> None:
    found = exprs(b'#include "mylib/header.h"\nint main(void) { return 0; }\n', language)
    assert found['#include "mylib/header.h"'] == 1


def test_no_tree_or_no_query() -> None:
    assert expressions_of(None, "python") == Counter()
    _, tree = parse_source(b"print('hello world')\n", "python")
    assert expressions_of(tree, None) == Counter()
    _, tree = parse_source(b"puts('hello world')\n", "ruby")
    assert expressions_of(tree, "ruby") == Counter()  # no pattern for ruby


def test_per_thread_queries() -> None:
    results: list[Counter[str]] = []

    def work() -> None:
        results.append(exprs(b"print('hello world')\n", "python"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [Counter({"print('hello world')": 1})] * 4
