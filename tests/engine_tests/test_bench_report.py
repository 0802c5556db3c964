"""The benchmark report's arithmetic, table and plot, on hand-made completions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from daemon.bench.replay import greedy_output, read_curve
from daemon.bench.report import format_table, method_row, percentiles, write_plot
from daemon.engine.budget import CostCurve
from daemon.engine.decode import DecodeResult
from daemon.engine.engine import Completion
from daemon.engine.retrieval import DraftStats
from daemon.errors import UsageError


def _done(
    method: str,
    tokens: list[int],
    seconds: float,
    steps: int,
    accepted: list[int] | None = None,
    retrieval_ms: list[float] | None = None,
) -> Completion:
    decoded = DecodeResult(
        tokens=tokens,
        stop_reason="max_new_tokens",
        prefill_s=1.0,
        seconds=seconds,
        forwards=steps + 1,
        accepted=[0] * steps if accepted is None else accepted,
    )
    return Completion(method, "", decoded, DraftStats(search_ms=retrieval_ms or []))


def test_row_speedup_identity_and_decode_rate() -> None:
    reference = [_done("ar", [1, 2, 3, 4], 5.0, 3), _done("ar", [5, 6], 3.0, 1)]
    fast = [
        _done("codeswift", [1, 2, 3, 4], 2.0, 1, accepted=[2], retrieval_ms=[1.0, 3.0]),
        _done("codeswift", [5, 7], 2.0, 1, accepted=[0]),
    ]
    row = method_row(fast, reference, reference, ["a", "b"])
    assert row["speedup"] == (6 / 4) / (6 / 8)
    assert row["identical"] == 0.5 and row["mismatched"] == ["b"]
    assert row["mean_accepted"] == 6 / 4  # tokens per forward, prefill included
    assert row["decode_tokens_per_s"] == 4 / 2.0  # 4 tokens after the first, 2 s after prefill
    assert row["accepted_histogram"] == {"0": 1, "2": 1}
    assert row["retrieval_p50_ms"] == 3.0


def test_hugging_face_rows_have_no_decode_rate() -> None:
    reference = [_done("ar", [1, 2], 2.0, 1)]
    row = method_row([_done("pld", [1, 2], 1.0, 1)], reference, reference, ["a"])
    assert "decode_tokens_per_s" not in row and row["speedup"] == 2.0


def test_percentiles_of_nothing_is_nothing() -> None:
    assert percentiles([], "retrieval") == {}
    assert percentiles([float(i) for i in range(100)], "x") == {"x_p50_ms": 50.0, "x_p99_ms": 99.0}


def _report() -> dict[str, object]:
    reference = [_done("ar", [1, 2, 3], 3.0, 2)]
    rows = {
        "ar": method_row(reference, reference, reference, ["a"]),
        "lookup": method_row(
            [_done("lookup", [1, 2, 3], 2.0, 1, accepted=[1])], reference, reference, ["a"]
        ),
    }
    rows["ar"] |= {"peak_rss_mb": 1000.0, "memory_vs_ar": 1.0}
    env = {"model": "m", "device": "cpu", "dtype": "float32", "threads": 2, "cpu": "x"}
    return {"suite": "humaneval", "prompts": 1, "max_new_tokens": 3, "env": env, "methods": rows}


def test_table_shows_dashes_for_what_was_not_measured() -> None:
    lines = format_table(_report()).splitlines()
    assert lines[1].split()[:3] == ["method", "tok/s", "speedup"]
    lookup = next(line for line in lines if line.startswith("lookup"))
    assert "1.50x" in lookup and lookup.split()[-1] == "-"  # no memory probe for it


def test_plot_is_a_png(tmp_path: Path) -> None:
    target = tmp_path / "bench.png"
    write_plot(_report(), target)
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_replay_keeps_greedy_outputs_per_port_prompt_and_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODESWIFT_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    def decode(tokens: list[int]) -> Callable[[Sequence[int], int], list[int]]:
        return lambda prompt, budget: calls.append(1) or tokens

    assert greedy_output("port-a", [1, 2], 8, decode([5, 6])) == [5, 6]
    assert greedy_output("port-a", [1, 2], 8, decode([9])) == [5, 6]  # kept: no decode
    assert len(calls) == 1
    # another port, prompt or budget decodes again
    assert greedy_output("port-b", [1, 2], 8, decode([7])) == [7]
    assert greedy_output("port-a", [1, 3], 8, decode([8])) == [8]
    assert greedy_output("port-a", [1, 2], 9, decode([4])) == [4]
    assert len(calls) == 4
    # a damaged entry is decoded again and replaced
    for kept in (tmp_path / "replay").iterdir():
        kept.write_text("{not json")
    assert greedy_output("port-a", [1, 2], 8, decode([3])) == [3]
    assert greedy_output("port-a", [1, 2], 8, decode([0])) == [3]


def test_replay_reads_a_cost_curve_from_a_report_or_a_cached_curve(tmp_path: Path) -> None:
    report, cached, broken = tmp_path / "r.json", tmp_path / "c.json", tmp_path / "b.json"
    report.write_text(json.dumps({"cost_curve_ms": {"16": 30.0, "1": 20.0, "2": 21.0}}))
    cached.write_text(json.dumps({"sizes": [1, 4], "ms": [10.0, 12.5]}))
    assert read_curve(report) == CostCurve((1, 2, 16), (20.0, 21.0, 30.0))
    assert read_curve(cached).cost(4) == 12.5
    for text in ("{", "[]", '{"cost_curve_ms": {"2": 5.0}}', '{"sizes": [1], "ms": [0]}'):
        broken.write_text(text)
        with pytest.raises(UsageError, match="no cost curve"):
            read_curve(broken)
    with pytest.raises(UsageError, match="no cost curve"):
        read_curve(tmp_path / "missing.json")
