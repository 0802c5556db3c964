"""Pure parts of the server: client settings, the offer cache, positions (UTF-16, clamping)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pygls.workspace import TextDocument

from lsp.server import _offset, uri_path
from lsp.settings import Settings, parse_settings
from lsp.typeahead import Offer, OfferCache


def test_settings_from_camel_case_with_bad_values_replaced() -> None:
    settings, problems = parse_settings(
        {"maxNewTokens": 32, "multiline": "sometimes", "debounceMs": True, "indexExclude": ["a/"]}
    )
    assert settings.max_new_tokens == 32
    assert settings.multiline == "auto" and settings.debounce_ms == Settings().debounce_ms
    assert settings.index_exclude == ("a/",)
    assert len(problems) == 2 and any("multiline" in p for p in problems)


def test_settings_under_a_section_and_on_top_of_earlier_ones() -> None:
    first, _ = parse_settings({"codeswift": {"maxNewTokens": 16}})
    second, problems = parse_settings({"debounceMs": 10}, first)
    assert (second.max_new_tokens, second.debounce_ms, problems) == (16, 10, [])
    assert parse_settings("nonsense")[1] and parse_settings(None) == (Settings(), [])


def test_settings_reject_values_out_of_range() -> None:
    with pytest.raises(ValueError):
        Settings(max_new_tokens=0)
    assert parse_settings({"timeoutMs": 5})[0].timeout_ms == Settings().timeout_ms


def offer(prefix: str, text: str, key: object = "k") -> Offer:
    return Offer("id-1", prefix, "\n", text, key)


def test_typed_ahead_answers_the_rest_and_nothing_else() -> None:
    cache = OfferCache()
    cache.remember("u", offer("x = ", "compute(a, b)"))
    hit = cache.lookup("u", "x = comp", "\n", "k")
    assert hit is not None and hit.text == "ute(a, b)" and hit.prefix == "x = comp"
    assert cache.lookup("u", "x = compx", "\n", "k") is None  # typed something else
    assert cache.lookup("u", "x = compute(a, b)", "\n", "k") is None  # all typed: nothing left
    assert cache.lookup("u", "x = comp", "\n", "other settings") is None
    assert cache.lookup("u", "x = comp", "changed suffix", "k") is None
    assert cache.lookup("other-document", "x = comp", "\n", "k") is None
    assert cache.hits == 1
    cache.forget("u")
    assert cache.lookup("u", "x = ", "\n", "k") is None


def test_offer_cache_is_bounded() -> None:
    cache = OfferCache(per_document=2, documents=2)
    for n in range(5):
        cache.remember(f"u{n}", offer(f"p{n}", "text"))
        cache.remember("u0", offer(f"q{n}", "text"))
    assert cache.lookup("u4", "p4", "\n", "k") is not None
    assert cache.lookup("u1", "p1", "\n", "k") is None  # evicted document
    assert cache.lookup("u0", "q0", "\n", "k") is None  # evicted offer


def test_positions_count_utf16_units_and_clamp() -> None:
    text = 'label = "😀 smile"\nvalue = 1\n'
    document = TextDocument("file:///a.py", text)
    # 😀 is two UTF-16 units: character 11 is right after it
    assert text[: _offset(document, types.Position(0, 11))] == 'label = "😀'
    assert _offset(document, types.Position(0, 500)) == text.index("\n")  # past line end
    assert _offset(document, types.Position(1, 3)) == text.index("value") + 3
    assert _offset(document, types.Position(9, 0)) == len(text)  # past the last line


def test_uri_paths(tmp_path: Path) -> None:
    path = tmp_path / "a b.py"
    assert uri_path(path.as_uri()) == path  # percent-escapes undone
    assert uri_path("untitled:Untitled-1") is None


def test_indentation_style_comes_from_the_client_or_the_document() -> None:
    from lsp.server import indent_style

    assert indent_style({"tabSize": 2, "insertSpaces": False}, "") == (2, False)
    assert indent_style(None, "def f():\n\treturn 1\n") == (4, False)
    assert indent_style(None, "def f():\n    return 1\n") == (4, True)


def test_log_level_setting_sets_the_servers_log_level_only_when_sent() -> None:
    import logging
    from typing import Any

    from lsp.server import build_server

    class Configured:
        def __init__(self) -> None:
            self.settings: list[Settings] = []

        def configure(self, settings: Settings) -> None:
            self.settings.append(settings)

    backend: Any = Configured()
    server = build_server(backend, "test")
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.WARNING)
        server.apply_settings({"maxNewTokens": 8})  # no logLevel: the command line's stands
        assert root.level == logging.WARNING
        server.apply_settings({"logLevel": "debug"})
        assert root.level == logging.DEBUG and backend.settings[-1].log_level == "debug"
        server.apply_settings({"codeswift": {"logLevel": "loud"}})  # reported, the default used
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)
