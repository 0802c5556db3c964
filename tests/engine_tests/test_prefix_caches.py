"""Per-document KV caches: the least recently used documents go first, the latest stays."""

from __future__ import annotations

from daemon.engine.prefix_caches import PrefixCaches


def test_least_recently_used_documents_are_dropped_beyond_the_row_budget() -> None:
    caches = PrefixCaches(max_rows=100)
    for name, rows in (("a", 40), ("b", 40), ("c", 40)):
        caches.get(name).tokens = list(range(rows))
        caches.trim()
    assert len(caches) == 2 and caches.rows == 80  # "a" went first
    caches.get("b")  # used again: now "c" is the oldest
    caches.get("d").tokens = list(range(50))
    caches.trim()
    assert caches.get("b").tokens and not caches.get("c").tokens  # "c" was dropped, now new


def test_the_latest_document_stays_even_when_alone_over_budget() -> None:
    caches = PrefixCaches(max_rows=10)
    caches.get("big").tokens = list(range(50))
    caches.trim()
    assert caches.get("big").tokens == list(range(50))
    caches.drop("big")
    assert len(caches) == 0 and not caches.get("big").tokens
