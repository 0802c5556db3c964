"""The editing-session bench with the real model: a short replay of click's files."""

from __future__ import annotations

import pytest

from tests.conftest import require_real_model

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_short_replay_of_click_reports_sane_numbers() -> None:
    require_real_model()
    from daemon.bench.edit import format_edit_table, run_edit_bench

    # float32: the service's answers must equal cold greedy's exactly (bf16 may round apart)
    report = run_edit_bench(
        "qwen2.5-coder-0.5b", "click", 6, 0, device="cpu", dtype="float32", max_new_tokens=12
    )
    assert report["suite"] == "edit:click"
    assert report["env"]["dtype"] == "float32" and report["env"]["model"] == "qwen2.5-coder-0.5b"
    assert report["requests"] == 6 == sum(f["requests"] for f in report["files"])
    assert report["typed_ahead_hits"] + report["model_calls"] == report["requests"]
    assert report["model_calls"] >= 1  # the first request in a file always calls the model
    latency = report["latency_ms"]
    assert latency["codeswift"]["n"] == 6 and latency["cold_greedy"]["n"] == 6
    assert latency["model_calls"]["n"] == latency["cold_greedy_model_calls"]["n"]
    assert latency["model_calls"]["n"] == report["model_calls"]
    assert latency["typed_ahead"]["n"] == report["typed_ahead_hits"]
    for name, row in latency.items():
        if row["n"]:
            assert 0 < row["p50"] <= row["p95"], name
            assert row["mean"] > 0, name
    if report["typed_ahead_hits"]:  # answered without the model: far below any model call
        assert latency["typed_ahead"]["p95"] < latency["model_calls"]["p50"]
    assert 0 <= report["reused_prompt_tokens"] < report["prompt_tokens"]
    if report["model_calls"] > 1:  # a later call in the same file reuses the earlier KV rows
        assert report["reused_prompt_tokens"] > 0
    assert report["speedup"]["p50"] > 0 and report["speedup"]["model_calls_mean"] > 0
    exact = report["exact"]
    assert 1 <= exact["compared"] <= report["model_calls"]
    assert exact["identical"] == exact["compared"], exact["mismatched"]
    table = format_edit_table(report)
    assert "edit:click" in table and "cold greedy" in table
