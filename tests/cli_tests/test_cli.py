"""The `codeswift` command as a user runs it: a subprocess, its exit code and its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_tests.processes import Codeswift
from tests.conftest import REPO, require_real_model


def codeswift(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert needle in lines[0]


def test_empty_prompt(tmp_path: Path) -> None:
    prompt = tmp_path / "empty.py"
    prompt.write_text("  \n")
    assert_one_line_error(codeswift("generate", str(prompt)), "empty")


def test_prompt_that_is_not_utf8(tmp_path: Path) -> None:
    prompt = tmp_path / "latin1.py"
    prompt.write_bytes(b"x = '\xe9t\xe9'\n")
    assert_one_line_error(codeswift("generate", str(prompt)), "not UTF-8")


def test_missing_prompt_file(tmp_path: Path) -> None:
    assert_one_line_error(codeswift("generate", str(tmp_path / "nope.py")), "cannot read")


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    prompt = tmp_path / "p.py"
    prompt.write_text("def f():\n")
    result = codeswift("generate", str(prompt), "--model", "gpt-17")
    assert_one_line_error(result, "qwen2.5-coder-0.5b")
    assert "smollm2-135m" in result.stderr
    assert_one_line_error(codeswift("setup", "--model", "gpt-17"), "known models")


def test_max_new_tokens_zero(tmp_path: Path) -> None:
    prompt = tmp_path / "p.py"
    prompt.write_text("def f():\n")
    assert_one_line_error(codeswift("generate", str(prompt), "--max-new-tokens", "0"), "at least 1")


def test_model_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    prompt = tmp_path / "p.py"
    prompt.write_text("def f():\n")
    result = codeswift("generate", str(prompt), "--model", str(tmp_path))
    assert_one_line_error(result, "no weights")


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 with a 64-token context and the real tokenizer, saved as a folder."""
    require_real_model()
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from daemon.engine.registry import DEFAULT_MODEL, MODELS, converted_dir

    folder = tmp_path_factory.mktemp("short-context")
    tokenizer = AutoTokenizer.from_pretrained(converted_dir(MODELS[DEFAULT_MODEL]))
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_long_prompt_is_truncated_from_the_left_and_said(
    short_context_model: Path, tmp_path: Path
) -> None:
    prompt = tmp_path / "long.py"
    prompt.write_text("".join(f"value_{i} = {i}\n" for i in range(200)))
    result = codeswift(
        "generate",
        str(prompt),
        "--model",
        str(short_context_model),
        "--max-new-tokens",
        "8",
        "--json",
        "--dtype",
        "float32",
    )
    assert result.returncode == 0, result.stderr
    assert "dropped its first" in result.stderr
    report = json.loads(result.stdout)
    assert report["prompt_tokens"] == 64 - 8
    assert report["truncated_tokens"] > 0


@pytest.mark.real_model
def test_generate_json_with_the_real_model() -> None:
    require_real_model()
    sample = REPO / "examples" / "sample_prompt.py"
    result = codeswift("generate", str(sample), "--max-new-tokens", "24", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "text",
        "new_tokens",
        "steps",
        "mean_accepted",
        "seconds",
        "tokens_per_s",
        "method",
        "model",
        "device",
        "dtype",
    ):
        assert key in report
    assert report["method"] == "codeswift" and report["model"] == "qwen2.5-coder-0.5b"
    assert report["new_tokens"] == 24 and "return Vector2" in report["text"]


@pytest.mark.real_model
def test_generate_reads_stdin_and_prints_text() -> None:
    require_real_model()
    result = codeswift(
        "generate", "-", "--max-new-tokens", "8", "--method", "ar", stdin=b"def fibonacci(n):\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tok/s" in result.stderr


@pytest.mark.real_model
def test_generate_refuses_assisted_without_a_draft_model() -> None:
    require_real_model()
    result = codeswift("generate", "-", "--method", "assisted", stdin=b"def f():\n")
    assert result.returncode == 2
    assert "needs a draft model" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.real_model
@pytest.mark.slow
def test_bench_float32_is_identical_for_every_method(tmp_path: Path) -> None:
    """Also the report's extras: peak memory probed per method in a fresh process, the plot."""
    require_real_model()
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    result = codeswift(
        "bench",
        "--suite",
        "humaneval",
        "--limit",
        "1",
        "--max-new-tokens",
        "32",
        "--methods",
        "ar,pld,codeswift",
        "--dtype",
        "float32",
        "--json",
        str(out),
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["suite"] == "humaneval" and report["env"]["dtype"] == "float32"
    # pld runs transformers: its own greedy, ar@transformers, runs beside it as its reference
    assert set(report["methods"]) == {"ar", "pld", "codeswift", "ar@transformers"}
    assert 0 < report["cost_curve_ms"]["1"] < report["cost_curve_ms"]["64"]  # codeswift's trees
    assert report["methods"]["pld"]["reference"] == "ar@transformers"
    for row in report["methods"].values():
        assert row["identical"] == 1.0
        assert row["tokens_per_s"] > 0 and row["mean_accepted"] >= 1.0
        # fp32 weights of a 0.5B model alone are ~2 GB; loading peaks are not counted
        assert 1500 < row["peak_rss_mb"] < 8000
        assert row["loaded_rss_mb"] <= row["peak_rss_mb"]
    assert report["methods"]["ar"]["speedup"] == 1.0
    assert report["methods"]["ar"]["memory_vs_ar"] == 1.0
    assert "decode_tokens_per_s" in report["methods"]["codeswift"]
    assert "decode_tokens_per_s" not in report["methods"]["pld"]  # HF's prefill is not timed apart
    assert "codeswift" in result.stdout and "peak MB" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # codeswift scores its trees: the report says what each source drafted and got accepted
    calibration = report["methods"]["codeswift"]["calibration"]
    assert sum(row["drafted"] for row in calibration["per_source"].values()) > 0
    assert "calibration of codeswift" in result.stdout


@pytest.mark.real_model
def test_bench_replay_models_the_drafting_of_each_method(tmp_path: Path) -> None:
    require_real_model()
    out, plot = tmp_path / "replay.json", tmp_path / "replay.png"
    flat = tmp_path / "flat.json"  # another machine's curve: 16 rows cost 1.5 one-row steps
    flat.write_text(json.dumps({"cost_curve_ms": {"1": 20.0, "16": 30.0, "64": 80.0}}))
    result = codeswift(
        "bench", "--suite", "replay:humaneval", "--limit", "2", "--max-new-tokens", "24",
        "--methods", "lookup,codeswift,codeswift-no-scoring", "--cost-curve", str(flat),
        "--json", str(out), "--plot", str(plot),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert list(report["methods"]) == ["lookup", "codeswift", "codeswift-no-scoring"]
    assert report["cost_curve_ms"] == {"1": 20.0, "16": 30.0, "64": 80.0}
    for row in report["methods"].values():
        assert row["tokens_per_forward"] >= 1.0 and row["modelled_decode_speedup"] > 0
    assert "calibration" in report["methods"]["codeswift"]
    assert "calibration" not in report["methods"]["lookup"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = codeswift("bench", "--suite", "replay:humaneval", "--methods", "pld")
    assert refused.returncode == 2 and "drafting methods only" in refused.stderr
    refused = codeswift("bench", "--suite", "humaneval", "--cost-curve", str(flat))
    assert refused.returncode == 2 and "replay suites only" in refused.stderr


def test_setup_is_idempotent_once_set_up() -> None:
    require_real_model()
    result = codeswift("setup")
    assert result.returncode == 0, result.stderr
    assert "ready at" in result.stderr


@pytest.mark.real_model
def test_index_reports_counts_and_reruns_without_work(tmp_path: Path) -> None:
    require_real_model()
    workspace = tmp_path / "ws"
    (workspace / "pkg").mkdir(parents=True)
    (workspace / "pkg" / "shapes.py").write_text("def area(w, h):\n    return w * h\n")
    (workspace / "blob.py").write_bytes(b"\0\0binary")
    (workspace / "huge.py").write_text("x = 1\n" * 300_000)
    first = codeswift("index", str(workspace), "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {"files", "skipped", "chunks", "tokens", "seconds"} <= set(report)
    assert report["files"] == 1 and report["tokens"] > 5
    assert report["skipped"] == {"binary": 1, "too_large": 1}
    again = json.loads(codeswift("index", str(workspace), "--json").stdout)
    assert again["indexed"] == 0 and again["files"] == 1


@pytest.mark.real_model
def test_index_watch_follows_saves_until_interrupted(tmp_path: Path) -> None:
    require_real_model()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.py").write_text("def first():\n    return 1\n")
    with Codeswift("index", str(workspace), "--watch", "--json") as watch:
        assert watch.next_report(lambda r: r["files"] == 1)["chunks"] == 1
        (workspace / "b.py").write_text("class Second:\n    def m(self):\n        pass\n")
        saved = watch.next_report(lambda r: r["files"] == 2)
        assert saved["indexed"] == 1 and saved["chunks"] == 3
        (workspace / "a.py").unlink()
        assert watch.next_report(lambda r: r["files"] == 1)["dropped"] == 1
        watch.interrupt(signal.SIGINT)
        assert "Traceback" not in "".join(watch.stderr), watch.explain("a traceback")


def test_index_rejects_a_blank_glob(tmp_path: Path) -> None:
    result = codeswift("index", str(tmp_path), "--exclude", " ")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "codeswift: error: bad index option: bad glob ' '"
    ]


@pytest.mark.real_model
def test_generate_with_a_workspace_and_rest(tmp_path: Path) -> None:
    require_real_model()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "geometry.py").write_text(
        "def rectangle_area(width, height):\n    return width * height\n"
    )
    prompt = tmp_path / "p.py"
    prompt.write_text("from geometry import rectangle_area\n\n\ndef square_area(side):\n")
    for method in ("codeswift", "rest"):
        result = codeswift(
            "generate",
            str(prompt),
            "--workspace",
            str(workspace),
            "--method",
            method,
            "--max-new-tokens",
            "12",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["method"] == method
    bad = codeswift("generate", str(prompt), "--method", "magic")
    assert_one_line_error(bad, "unknown method")


def test_serve_listens_on_loopback_only() -> None:
    result = codeswift("serve", "--tcp", "0.0.0.0:2087")
    assert result.returncode == 2
    assert "loopback" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.real_model
@pytest.mark.slow
def test_bench_soak_runs_briefly(tmp_path: Path) -> None:
    """The soak itself runs for 15 minutes outside CI; here a quarter of a minute of it."""
    require_real_model()
    out = tmp_path / "soak.json"
    result = codeswift(
        "bench", "--suite", "soak", "--minutes", "0.25", "--json", str(out), "--seed", "3"
    )
    report = json.loads(out.read_text())
    assert report["completions_answered"] > 0 and report["errors"] == 0, report["error_examples"]
    assert report["store_equals_fresh_index"] is True
    assert set(report["checks"]) >= {"no_errors", "threads_constant", "rss_growth_within_10%"}
    assert result.returncode == (0 if all(report["checks"].values()) else 1), result.stderr
    assert report["samples"][0]["rss_mb"] > 100 and report["samples"][0]["threads"] > 1
