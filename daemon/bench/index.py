"""`codeswift bench --suite index`: the indexer's targets, measured on a copy of a real tree.

Reports the initial index (walk, parse, tokenize, shard, build the search index), a re-run on
the unchanged tree, the time from a save to the saved code being retrievable (through the real
watchdog observer, debounce included and reported apart), idle CPU while watching, and memory.
The workspace is copied first: the benchmark edits files and must never touch the user's.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon.errors import UsageError
from indexer.workspace import WorkspaceIndexer

__all__ = ["run_index_bench"]

_SAVES = 20
_IDLE_S = 5.0
_DEBOUNCE_S = 0.15


def run_index_bench(model: str, workspace: Path | None) -> dict[str, Any]:
    from daemon.assembly import ShardSink, open_project, scan_project
    from daemon.engine.models import load_tokenizer

    if workspace is None:
        raise UsageError("--suite index needs --workspace DIR (a source tree to index)")
    tokenizer = load_tokenizer(model)
    with tempfile.TemporaryDirectory(prefix="codeswift-index-bench-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(workspace, tree, symlinks=True)
        lines = sum(_lines(p) for p in tree.rglob("*.py"))

        shards = Path(scratch) / "shards"
        initial = scan_project(open_project(tree, tokenizer, shards))
        rerun = scan_project(open_project(tree, tokenizer, shards))

        store = open_project(tree, tokenizer, shards)
        sink = ShardSink(store.shards)
        indexer = WorkspaceIndexer(lambda root: sink, debounce_s=_DEBOUNCE_S)
        with indexer:
            indexer.add_folder(tree)
            indexer.wait_idle(120)
            saves = _saves(tree, store, tokenizer)
            cpu = _idle_cpu(indexer)
        return {
            "suite": "index",
            "workspace": str(workspace),
            "python_lines": lines,
            "initial": _rounded(initial),
            "rerun_unchanged": _rounded(rerun),
            "save_to_retrievable_ms": saves,
            "debounce_ms": _DEBOUNCE_S * 1000,
            "idle_cpu_percent": cpu,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "base_rebuilds": store.rebuilds,
        }


def _saves(tree: Path, store: Any, tokenizer: Any) -> dict[str, float]:
    """Append a new function to a file, save, and time until the store can draft from it."""
    paths = sorted(tree.rglob("*.py"))
    samples = []
    for number, path in enumerate(paths[:: max(1, len(paths) // _SAVES)][:_SAVES]):
        # the number comes early, so the probe's match is this save's and no earlier one's
        marker = f"def saved_{number}_by_codeswift_bench(value):\n    return value * {number}\n"
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        probe, expected = ids[:10], ids[10:14]
        started = time.perf_counter()
        with path.open("a", encoding="utf-8") as handle:
            handle.write("\n\n" + marker)
        deadline = started + 10
        while time.perf_counter() < deadline:
            if _drafts(store, probe, expected):
                samples.append((time.perf_counter() - started) * 1000)
                break
            time.sleep(0.002)
    if not samples:
        return {"p50": -1.0, "max": -1.0, "saves": 0}
    return {
        "p50": round(statistics.median(samples), 1),
        "max": round(max(samples), 1),
        "after_debounce_p50": round(statistics.median(samples) - _DEBOUNCE_S * 1000, 1),
        "saves": len(samples),
    }


def _drafts(store: Any, probe: list[int], expected: list[int]) -> bool:
    for layer in store.layers():
        match = layer.longest_match(probe)
        if match is None or match.length < len(probe):
            continue
        if any(c[: len(expected)] == tuple(expected) for c in layer.continuations(match, 4, 8)):
            return True
    return False


def _idle_cpu(indexer: WorkspaceIndexer) -> float:
    indexer.wait_idle(30)
    before = time.process_time()
    time.sleep(_IDLE_S)
    return round((time.process_time() - before) / _IDLE_S * 100, 2)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _rounded(report: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}
