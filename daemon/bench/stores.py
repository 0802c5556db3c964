"""`codeswift bench --suite stores --workspace DIR`: the datastores' own costs, no model weights.

Measures what the drafting targets name: general store build and load time, project indexing,
a 2,000-line file's shard update, and retrieval latency per step over both stores, sequential
against parallel.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon.errors import UsageError

__all__ = ["run_store_bench"]

_SAMPLES = 400


def run_store_bench(model: str, workspace: Path | None) -> dict[str, Any]:
    from daemon.assembly import (
        corpus_files,
        open_general,
        open_project,
        read_corpus_file,
        scan_project,
    )
    from daemon.bench.methods import put_text
    from daemon.bench.retrieval import retrieval_latency
    from daemon.engine.general_store import build_store, tokenizer_fingerprint
    from daemon.engine.models import load_tokenizer

    if workspace is None:
        raise UsageError("--suite stores needs --workspace DIR (a project to index)")
    tokenizer = load_tokenizer(model)
    sources = corpus_files()
    started = time.perf_counter()
    meta = {"tokenizer": tokenizer_fingerprint(tokenizer)}
    built = build_store(tokenizer, sources, read_corpus_file, meta)
    build_s = time.perf_counter() - started
    open_general(tokenizer)  # make sure the cached copy exists before timing a load
    started = time.perf_counter()
    general = open_general(tokenizer)
    load_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="codeswift-store-bench-") as scratch:
        project = open_project(workspace, tokenizer, folder=Path(scratch) / "shards")
        sync = scan_project(project)
        started = time.perf_counter()
        project.compact()
        merged = project.layers()
        merge_s = time.perf_counter() - started

        lines = _sample_lines(workspace, 2000)
        started = time.perf_counter()
        put_text(project, "codeswift-bench/two_thousand_lines.py", "".join(lines))
        update_ms = (time.perf_counter() - started) * 1000

        contexts = _contexts(tokenizer, workspace)
        return {
            "suite": "stores",
            "general": {
                "tokens": len(general),
                "files": built.meta.get("files"),
                "build_s": round(build_s, 2),
                "load_s": round(load_s, 3),
            },
            "project": {
                "workspace": str(workspace),
                **sync,
                "merge_index_s": round(merge_s, 3),
                "shard_update_2000_lines_ms": round(update_ms, 2),
            },
            "retrieval": {
                "contexts": len(contexts),
                "sequential": retrieval_latency(general, merged, contexts, parallel=False),
                "parallel": retrieval_latency(general, merged, contexts, parallel=True),
            },
        }


def _sample_lines(workspace: Path, count: int) -> list[str]:
    lines: list[str] = []
    for path in sorted(workspace.rglob("*.py")):
        try:
            lines += path.read_text(encoding="utf-8").splitlines(keepends=True)
        except (OSError, UnicodeDecodeError):
            continue
        if len(lines) >= count:
            break
    return lines[:count]


def _contexts(tokenizer: Any, workspace: Path) -> list[list[int]]:
    """Realistic contexts: 64-token windows ending at random points of the workspace's files."""
    rng = random.Random(0)
    files = sorted(workspace.rglob("*.py"))
    contexts: list[list[int]] = []
    for path in rng.sample(files, min(len(files), 50)):
        try:
            ids = tokenizer(path.read_text(encoding="utf-8"))["input_ids"]
        except (OSError, UnicodeDecodeError):
            continue
        for _ in range(_SAMPLES // 50):
            if len(ids) > 80:
                end = rng.randrange(64, len(ids))
                contexts.append(ids[end - 64 : end])
    return contexts
