"""The editing-session bench's pure parts: where to ask, which files, percentiles, the report."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from daemon.bench.edit import (
    _report,
    _Sample,
    body_line_starts,
    format_edit_table,
    method_summary,
    percentile,
    plan_replay,
)
from daemon.engine.scoring import Calibration
from lsp.settings import Settings

SOURCE = textwrap.dedent(
    '''\
    """Module docstring."""
    import os

    X = 1


    def documented(a):
        """One line.

        And more.
        """
        b = a + 1

        return b


    class Thing:
        def method(self):
            def inner():
                """Inner docstring."""
                return 2
            # a comment is written too
            return inner()

        def only_doc(self):
            """Nothing else."""


    async def fetch(
        url,
    ):
        data = await os.read(url)
        return data
    '''
)


def test_line_starts_are_function_body_lines_without_docstrings_or_blanks() -> None:
    lines = SOURCE.splitlines()
    starts = body_line_starts(SOURCE)
    assert [lines[i].strip() for i in starts] == [
        "b = a + 1",
        "return b",
        "def inner():",
        "return 2",
        "# a comment is written too",
        "return inner()",
        "data = await os.read(url)",
        "return data",
    ]
    assert starts == sorted(starts)


def test_line_numbers_are_counted_as_python_counts_them() -> None:
    text = "x = 1  # \f\ndef f():\n    y = 1\n\n    return y\n"  # a form feed: no new line
    assert body_line_starts(text) == [2, 4]


def test_no_line_starts_in_text_that_does_not_parse() -> None:
    assert body_line_starts("def broken(:\n    pass\n") == []


def _package(root: Path) -> Path:
    root.mkdir()
    for number in range(4):
        body = "".join(
            f"def f{number}_{k}(x):\n    y = x * {k}\n    return y + {number}\n\n\n"
            for k in range(6)
        )
        (root / f"mod{number}.py").write_text(body)
    (root / "small.py").write_text("def one():\n    return 1\n")  # too few functions
    (root / "broken.py").write_text("def (:\n")
    return root


def test_plan_is_deterministic_and_asks_at_body_line_starts(tmp_path: Path) -> None:
    root = _package(tmp_path / "pkg")
    plans = plan_replay(root, 10, seed=3, per_file=4)
    assert plans == plan_replay(root, 10, seed=3, per_file=4)
    assert sum(len(p.requests) for p in plans) == 10
    assert [len(p.requests) for p in plans] == [4, 4, 2]  # the per-file cap spreads them
    assert {p.relative for p in plans} <= {f"mod{n}.py" for n in range(4)}
    for plan in plans:
        text = (root / plan.relative).read_text()
        assert "".join(plan.lines) == text
        starts = body_line_starts(text)
        assert plan.start in starts  # the document is cut right before a body's first line
        assert list(plan.requests) == [i for i in starts if i >= plan.start][: len(plan.requests)]
        assert all(plan.lines[end - 1].strip().startswith("return") for end in plan.saves)


def test_plan_stops_short_when_the_folder_has_fewer_line_starts(tmp_path: Path) -> None:
    root = _package(tmp_path / "pkg")
    plans = plan_replay(root, 10_000, seed=0)
    assert sorted(p.relative for p in plans) == [f"mod{n}.py" for n in range(4)]
    assert all(len(p.requests) <= 12 for p in plans)  # six functions of two lines each


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(v) for v in range(1, 101)], 95) == pytest.approx(95.05)
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0


def test_report_counts_and_speedups_and_table(tmp_path: Path) -> None:
    root = _package(tmp_path / "pkg")
    plans = plan_replay(root, 4, seed=0)
    samples = [
        _Sample("mod0.py:2", "model", 100.0, 300.0, True, True),
        _Sample("mod0.py:3", "typed", 0.1, 250.0, None, True),
        _Sample("mod0.py:7", "model", 200.0, 400.0, False, False),
        _Sample("mod0.py:8", "typed", 0.1, 260.0, None, False),
    ]
    env = {"model": "m", "device": "cpu", "dtype": "float32", "threads": 2}
    calibration = Calibration()
    for accepted in (True, True, False):
        calibration.drafted(("history", 3, 0, 1, 1))
        calibration.observe(("history", 3, 0, 1, 1), 0.6, accepted)
    report = _report(
        Settings(debounce_ms=0),
        plans,
        samples,
        dist="pkg",
        env=env,
        prompt_tokens=1000,
        reused=900,
        method="codeswift",
        tokens_per_forward=2.5,
        calibration=calibration.reliability.as_dict(),
        answers=[{"tokens": 5, "forwards": 2, "stop": "shape", "text": "x = 1\n"}],
    )
    assert report["suite"] == "edit:pkg"
    assert report["method"] == "codeswift" and report["tokens_per_forward"] == 2.5
    assert (report["requests"], report["typed_ahead_hits"], report["model_calls"]) == (4, 2, 2)
    assert report["reused_share"] == 0.9
    assert report["exact"] == {"compared": 2, "identical": 1, "mismatched": ["mod0.py:7"]}
    latency = report["latency_ms"]
    assert latency["model_calls"] == {"n": 2, "p50": 150.0, "p95": 195.0, "mean": 150.0}
    assert latency["cold_greedy"]["n"] == 4 and latency["cold_greedy_model_calls"]["n"] == 2
    assert report["speedup"]["model_calls_mean"] == 2.33  # 350 / 150
    assert report["speedup"]["p50"] == round(280.0 / 50.05, 2)
    assert report["offers_matching_line"] == 2
    table = format_edit_table(report)
    assert "edit:pkg" in table and "typed-ahead hits 2, model calls 2" in table
    assert "exact 1/2" in table and "speedup vs cold greedy" in table
    assert report["answers"][0]["forwards"] == 2
    history = next(line for line in table.splitlines() if line.strip().startswith("history"))
    assert history.split()[1:] == ["3", "3", "2", "0.600", "0.667"]

    # a second method's session, summed up beside the first's and compared in the table
    without = dict(report, method="codeswift-no-memory", tokens_per_forward=2.0)
    without["answers"] = [{"tokens": 5, "forwards": 3, "stop": "shape", "text": "x = 1\n"}]
    report["methods"] = {r["method"]: method_summary(r) for r in (report, without)}
    assert report["methods"]["codeswift-no-memory"] == {
        "tokens_per_forward": 2.0,
        "tokens": 5,
        "forwards": 3,
        "model_calls": 2,
        "model_calls_ms": {"p50": 150.0, "mean": 150.0},
        "exact": {"compared": 2, "identical": 1},
    }
    row = next(
        line for line in format_edit_table(report).splitlines() if "no-memory" in line
    ).split()
    assert row[:3] == ["codeswift-no-memory", "2.00", "0.80x"] and row[-1] == "1/2"
