"""Which recurring expressions the project index drafts from, on counts from the real indexer."""

from __future__ import annotations

from collections import Counter

from daemon.engine.project_index import recurring
from indexer.chunks import parse_source
from indexer.expressions import expressions_of


def exprs(source: bytes, language: str | None) -> Counter[str]:
    _, tree = parse_source(source, language)
    return expressions_of(tree, language)


def test_recurring_orders_by_count_then_text() -> None:
    counts = Counter({"b()": 5, "a()": 5, "c()": 3, "d()": 2, "e()": 9})
    assert recurring(counts) == ["e()", "a()", "b()", "c()"]
    assert recurring(counts, min_count=5) == ["e()", "a()", "b()"]
    assert recurring(counts, min_count=1, limit=2) == ["e()", "a()"]
    assert recurring(Counter()) == []
    assert recurring(counts, min_count=10) == []


def test_recurring_over_summed_files() -> None:
    total: Counter[str] = Counter()
    for _ in range(3):
        total.update(exprs(b"import numpy as np\nlogger.info('x')\n", "python"))
    total.update(exprs(b"import pandas as pd\n", "python"))
    assert recurring(total, min_count=3) == ["import numpy as np", "logger.info('x')"]
