"""`--suite edit:DIST`: an editing session replayed through the language server's own path.

Files of an installed distribution are written again, top to bottom, in a scratch copy of its
package folder (installed files are never touched). A file's document starts as the file cut
before one function's body (drawn among its first half of functions), and so does the file on
disk, so the project store never sees what is still to be written. Lines are then written one
by one; at every line start inside a function body (after the docstring, non-blank) the cursor
sits after the line's indentation with an empty suffix (the user writes the file top to bottom,
as a new file), and a completion is asked for, as an editor's automatic request, no debounce.

Requests go through `lsp.completions.Completer` into an in-process `daemon.service.Service`
exactly as the server sends them: offers the user typed into are answered without the model
(typed-ahead), the previous request's KV rows are reused, the drafters' caches and history carry
over, and the project store follows the buffer (`buffer_changed` after every line) and the
saved file (written and `file_saved` at the end of every function).

The baseline, timed for every request, is a server without these caches and without
speculation: cold plain greedy (`ar`, fresh KV cache) on the prompt and stop rules the service
uses. Where the model answered, its text must equal the service's (lossless decoding); bfloat16
may round a differently split forward differently, so mismatches are counted, not fatal.
"""

from __future__ import annotations

import ast
import asyncio
import io
import math
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from daemon.bench.repo_suite import package_root
from daemon.bench.report import calibration_lines
from daemon.errors import UsageError
from lsp.backend import CompletionRequest, Generated
from lsp.completions import Completer, Cursor
from lsp.server import indent_style
from lsp.settings import Settings
from lsp.shaping import CursorContext, cut_point, wants_multiline

__all__ = [
    "FileReplay",
    "body_line_starts",
    "format_edit_table",
    "percentile",
    "plan_replay",
    "run_edit_bench",
]

_MIN_FUNCTIONS = 3  # files with fewer functions are not replayed
_PER_FILE = 24  # at most this many requests in one file, so larger limits span files
_STATS = ("p50", "p95", "mean")


@dataclass(frozen=True)
class FileReplay:
    """One file to write again: its lines (ends kept), where writing starts, where to ask."""

    relative: str
    lines: tuple[str, ...]
    start: int  # 0-based: the document starts as lines[:start]
    requests: tuple[int, ...]  # 0-based lines whose start gets a completion request
    saves: frozenset[int]  # the file is saved once this many lines are written


def _function_spans(tree: ast.AST) -> list[tuple[int, int, int]]:
    """(first body line, first code line after the docstring, end line) per function, 1-based."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            doc = ast.get_docstring(node, clean=False) is not None
            code = node.body[1:] if doc else node.body
            if code:
                spans.append((node.body[0].lineno, code[0].lineno, node.end_lineno))
    return sorted(spans, key=lambda span: span[1])


def body_line_starts(text: str) -> list[int]:
    """0-based indexes of the non-blank lines of function bodies, docstrings left out."""
    try:
        spans = _function_spans(ast.parse(text))
    except SyntaxError:
        return []
    lines = text.split("\n")  # as `ast` counts lines (splitlines also breaks at \f and more)
    inside = {i for _, code, end in spans for i in range(code - 1, end)}
    inside -= {i for first, code, _ in spans for i in range(first - 1, code - 1)}
    return sorted(i for i in inside if i < len(lines) and lines[i].strip())


def plan_replay(root: Path, limit: int, seed: int, per_file: int = _PER_FILE) -> list[FileReplay]:
    """Files of `root` to write again and where to ask: `limit` requests in all (fewer when
    the folder has fewer), the same for the same seed."""
    candidates = []
    for path in sorted(root.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            spans = _function_spans(ast.parse(text))
        except (OSError, UnicodeDecodeError, SyntaxError):
            continue
        if len(spans) >= _MIN_FUNCTIONS:
            candidates.append((path.relative_to(root).as_posix(), text, spans))
    rng = random.Random(seed)
    rng.shuffle(candidates)
    plans: list[FileReplay] = []
    left = limit
    for relative, text, spans in candidates:
        start = rng.choice(spans[: max(1, len(spans) // 2)])[1] - 1
        asks = [i for i in body_line_starts(text) if i >= start][: min(left, per_file)]
        if asks:
            lines = tuple(io.StringIO(text).readlines())  # ends kept, "\n" only
            saves = frozenset(end for _, _, end in spans)
            plans.append(FileReplay(relative, lines, start, tuple(asks), saves))
            left -= len(asks)
        if left <= 0:
            break
    return plans


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _summary(samples: Sequence[float]) -> dict[str, float]:
    mean = sum(samples) / len(samples) if samples else 0.0
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    return {"n": len(samples), "p50": round(p50, 2), "p95": round(p95, 2), "mean": round(mean, 2)}


@dataclass(frozen=True)
class _Sample:
    where: str  # file:line (1-based)
    source: str  # "typed" (answered from an offer, no model call) | "model"
    ms: float
    cold_ms: float
    exact: bool | None  # the service's text equals cold greedy's (model calls only)
    matched: bool  # the offer's first line is the line the user then wrote


def run_edit_bench(
    model: str,
    dist: str,
    limit: int,
    seed: int,
    device: str = "auto",
    dtype: str = "auto",
    backend: str = "auto",
    *,
    max_new_tokens: int = 64,
    context_tokens: int = 0,
    methods: Sequence[str] = ("codeswift",),
) -> dict[str, Any]:
    """Replay `limit` line starts of `dist`'s files through the server's path (see above),
    drafting as each of our `methods` does (a plan or one of the bench's ablations), one
    session after another on a fresh server, in one run. The report is the first method's;
    with several, `methods` sums each one up beside it (the cold baseline is run once per
    request and shared: it does not depend on the method)."""
    from daemon.bench.methods import lab_plan

    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if not methods:
        raise UsageError("an edit session needs a method")
    decode_plans = []
    for method in methods:
        decode_plan = lab_plan(method)
        if decode_plan is None:
            raise UsageError(f"an edit session replays one of our methods, not the peer {method}")
        decode_plans.append(decode_plan)
    settings = Settings(
        debounce_ms=0,
        timeout_ms=120_000,
        max_new_tokens=max_new_tokens,
        context_tokens=context_tokens,
        model=model,
        device=device,
        dtype=dtype,
    )
    package = package_root(dist)
    baseline: dict[tuple[str, str, int], tuple[float, str]] = {}
    reports = []
    for decode_plan in decode_plans:
        with tempfile.TemporaryDirectory(prefix="codeswift-edit-") as scratch:
            workspace = Path(scratch) / package.name
            shutil.copytree(package, workspace, ignore=shutil.ignore_patterns("__pycache__"))
            plans = plan_replay(workspace, limit, seed)
            if not plans:
                raise UsageError(f"no function bodies to replay in {dist}")
            for plan in plans:  # what is still to be written is not on disk either
                (workspace / plan.relative).write_text("".join(plan.lines[: plan.start]), "utf-8")
            reports.append(_run(settings, dist, workspace, plans, backend, decode_plan, baseline))
    report = reports[0]
    if len(reports) > 1:
        report["methods"] = {r["method"]: method_summary(r) for r in reports}
    return report


def method_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """One session's figures that differ between methods: drafting, model calls, exactness."""
    answers = report["answers"]
    calls = report["latency_ms"]["model_calls"]
    return {
        "tokens_per_forward": report["tokens_per_forward"],
        "tokens": sum(a["tokens"] for a in answers),
        "forwards": sum(a["forwards"] for a in answers),
        "model_calls": report["model_calls"],
        "model_calls_ms": {"p50": calls["p50"], "mean": calls["mean"]},
        "exact": {k: report["exact"][k] for k in ("compared", "identical")},
    }


def _service(backend: str, decode_plan: Any) -> Any:
    """A `Service` that remembers every request sent to the model and its answer (made here:
    the service imports torch)."""
    from daemon.service import Service

    class RecordingService(Service):
        def __init__(self, backend: str) -> None:
            super().__init__(backend)
            self.calls: list[tuple[CompletionRequest, Future[Generated]]] = []

        def complete(
            self, request: CompletionRequest, cancel: threading.Event
        ) -> Future[Generated]:
            future = super().complete(request, cancel)
            self.calls.append((request, future))
            return future

        def plan_for(self, settings: Settings) -> Any:
            return decode_plan

    return RecordingService(backend)


def _run(
    settings: Settings,
    dist: str,
    workspace: Path,
    plans: list[FileReplay],
    backend: str,
    decode_plan: Any,
    baseline: dict[tuple[str, str, int], tuple[float, str]],
) -> dict[str, Any]:
    """One session with `decode_plan`; `baseline` holds the cold runs done so far (by file
    line, prefix and prompt size), and gains this session's."""
    from daemon.bench.methods import runtime_environment
    from daemon.engine.plan import AR
    from daemon.engine.stops import Stop

    service = _service(backend, decode_plan)
    ready = threading.Event()

    def status(state: str, details: Mapping[str, Any]) -> None:
        if state in ("ready", "error"):
            ready.set()

    service.add_folder(workspace)
    service.start(settings, status)
    try:
        if not ready.wait(900) or service.engine is None:
            raise UsageError(service.error or f"model {settings.model} did not load")
        engine = service.engine
        warm = engine.lm.tokenizer("def main():\n    ", add_special_tokens=False)["input_ids"]
        engine.complete(warm, AR, Stop(4))  # the baseline's one-off costs, outside timing
        if service.indexer is not None and not service.indexer.wait_idle(600):
            raise UsageError(f"indexing {workspace.name} did not finish")
        samples = asyncio.run(_replay(service, settings, workspace, plans, dist, baseline))
        run: dict[str, Any] = {
            "dist": dist,
            "env": runtime_environment(engine.lm, engine.model.backend),
        }
        run |= {"prompt_tokens": service.prompt_tokens, "reused": service.reused_tokens}
        answered = [f.result() for _, f in service.calls if f.done() and not f.exception()]
        run |= {
            "method": decode_plan.name,
            "tokens_per_forward": round(
                sum(g.tokens for g in answered) / max(sum(g.forwards for g in answered), 1), 3
            ),
            "calibration": reliability.as_dict()
            if (reliability := engine.reliability(decode_plan)) is not None
            else None,
            # each model answer, so a change in drafting can be traced to the requests it moved
            "answers": [
                {"tokens": g.tokens, "forwards": g.forwards, "stop": g.stop_reason, "text": g.text}
                for g in answered
            ],
        }
    finally:
        service.shutdown()
        for index in service.projects.folders().values():  # the scratch copy's shards
            if index.shards.root.is_relative_to(workspace.resolve()):
                shutil.rmtree(index.shards.folder, ignore_errors=True)
    return _report(settings, plans, samples, **run)


async def _replay(
    service: Any,
    settings: Settings,
    workspace: Path,
    plans: list[FileReplay],
    dist: str,
    baseline: dict[tuple[str, str, int], tuple[float, str]],
) -> list[_Sample]:
    completer = Completer(service, lambda: settings)
    samples: list[_Sample] = []
    total = sum(len(plan.requests) for plan in plans)
    with tqdm(total=total, desc=f"edit {dist}", unit="req", file=sys.stderr) as progress:
        for plan in plans:
            path = workspace / plan.relative
            written = "".join(plan.lines[: plan.start])
            service.buffer_changed(path, written)  # didOpen
            for index in range(plan.start, plan.requests[-1] + 1):
                line = plan.lines[index]
                if index in plan.requests:
                    prefix = written + line[: len(line) - len(line.lstrip(" \t"))]
                    service.buffer_changed(path, prefix)  # Enter, then the editor's indent
                    where = f"{plan.relative}:{index + 1}"
                    asked = await _ask(service, completer, path, prefix, line, where, baseline)
                    samples.append(asked)
                    hits = sum(s.source == "typed" for s in samples)
                    progress.set_postfix(typed=hits, model=len(samples) - hits, refresh=False)
                    progress.update()
                written += line
                service.buffer_changed(path, written)
                if index + 1 in plan.saves or index == plan.requests[-1]:
                    path.write_text(written, encoding="utf-8")
                    service.file_saved(path)
            service.buffer_closed(path)
            completer.forget(path.as_uri())
    return samples


async def _ask(
    service: Any,
    completer: Completer,
    path: Path,
    prefix: str,
    line: str,
    where: str,
    baseline: dict[tuple[str, str, int], tuple[float, str]],
) -> _Sample:
    """One request at the end of `prefix` as the server makes it, then the cold baseline
    (run once per file line, prefix and prompt size: an earlier method's session may have
    run it)."""
    tab_size, spaces = indent_style(None, prefix)
    cursor = Cursor(path.as_uri(), None, prefix, "", path, "python", tab_size, spaces)
    hits, calls = completer.offers.hits, len(service.calls)
    started = time.perf_counter()
    offer = await completer.complete(cursor, lambda: True)
    elapsed = (time.perf_counter() - started) * 1000
    # a block answered early is still being generated, and a prediction may follow: the
    # baseline runs the model once they have ended (one model, one thread at a time), and
    # once a warm-up queued after a short answer has too (a person writing the next line
    # leaves it the time)
    await completer.settled()
    await asyncio.to_thread(service.drain)
    own = [(r, f) for r, f in service.calls[calls:] if r.prefix == cursor.prefix]
    model_call = bool(own) and completer.offers.hits == hits
    request = own[0][0] if model_call else _server_request(cursor, completer)
    generated = own[0][1].result() if model_call else None
    if generated is not None and generated.short_prompt:  # a cold document's first request
        shorter = replace(request.settings, prefix_tokens=request.settings.cold_prefix_tokens)
        request = replace(request, settings=shorter)
    key = (where, prefix, request.settings.prefix_tokens)  # a cold document's is shorter
    if key not in baseline:
        baseline[key] = _cold(service, request)
    cold_ms, cold_text = baseline[key]
    exact = None
    if generated is not None and generated.stop_reason not in ("timeout", "cancelled"):
        exact = generated.text == cold_text
    matched = offer is not None and offer.text.split("\n", 1)[0].strip() == line.strip()
    return _Sample(where, "model" if model_call else "typed", elapsed, cold_ms, exact, matched)


def _server_request(cursor: Cursor, completer: Completer) -> CompletionRequest:
    """The request the server would send the model at `cursor` (as `Completer` builds it)."""
    settings = completer.settings()
    context = CursorContext(cursor.prefix, cursor.suffix, cursor.tab_size, cursor.insert_spaces)
    multiline = wants_multiline(context, settings.multiline)

    def stop(text: str) -> bool:
        return cut_point(text, context, multiline) is not None

    return CompletionRequest(cursor.prefix, cursor.suffix, cursor.path, "python", settings, stop)


def _cold(service: Any, request: CompletionRequest) -> tuple[float, str]:
    """Plain greedy with a fresh KV cache on the service's prompt (other files' chunks
    included, when `contextTokens` asks for them): (ms, completion text)."""
    from daemon.engine.plan import AR
    from daemon.engine.stops import Stop
    from daemon.service import request_prompt

    engine = service.engine
    started = time.perf_counter()
    asked = request_prompt(engine, request, service.neighbours_for(request))
    stop = Stop(
        request.settings.max_new_tokens,
        end_ids=frozenset(asked.end_ids),
        shape_decided=lambda raw: request.stop(asked.typed(raw)),
    )
    done = engine.complete(asked.ids, AR, stop, lead=asked.lead)
    return (time.perf_counter() - started) * 1000, asked.typed(done.text)


def _report(
    settings: Settings, plans: list[FileReplay], samples: list[_Sample], **run: Any
) -> dict[str, Any]:
    model = [s for s in samples if s.source == "model"]
    compared = [s for s in model if s.exact is not None]
    latency = {
        "codeswift": _summary([s.ms for s in samples]),
        "model_calls": _summary([s.ms for s in model]),
        "typed_ahead": _summary([s.ms for s in samples if s.source == "typed"]),
        "cold_greedy": _summary([s.cold_ms for s in samples]),
        "cold_greedy_model_calls": _summary([s.cold_ms for s in model]),
    }

    def speedup(ours: str, cold: str, stat: str) -> float:
        value = latency[ours][stat]
        return round(latency[cold][stat] / value, 2) if value else 0.0

    prompt_tokens, reused = run["prompt_tokens"], run["reused"]
    shown = (
        "max_new_tokens",
        "prefix_tokens",
        "suffix_tokens",
        "context_tokens",
        "debounce_ms",
    )
    return {
        "suite": f"edit:{run['dist']}",
        "env": run["env"],
        "settings": {name: getattr(settings, name) for name in shown},
        "files": [
            {"file": p.relative, "start_line": p.start + 1, "requests": len(p.requests)}
            for p in plans
        ],
        "method": run["method"],
        "tokens_per_forward": run["tokens_per_forward"],
        "calibration": run["calibration"],
        "answers": run["answers"],
        "requests": len(samples),
        "typed_ahead_hits": len(samples) - len(model),
        "model_calls": len(model),
        "offers_matching_line": sum(s.matched for s in samples),
        "prompt_tokens": prompt_tokens,
        "reused_prompt_tokens": reused,
        "reused_share": round(reused / max(prompt_tokens, 1), 3),
        "latency_ms": latency,
        "speedup": {
            "p50": speedup("codeswift", "cold_greedy", "p50"),
            "mean": speedup("codeswift", "cold_greedy", "mean"),
            "model_calls_p50": speedup("model_calls", "cold_greedy_model_calls", "p50"),
            "model_calls_mean": speedup("model_calls", "cold_greedy_model_calls", "mean"),
        },
        "exact": {
            "compared": len(compared),
            "identical": sum(bool(s.exact) for s in compared),
            "mismatched": [s.where for s in compared if not s.exact],
        },
    }


_ROWS = {
    "codeswift": "codeswift, all",
    "model_calls": "  model calls",
    "typed_ahead": "  typed-ahead hits",
    "cold_greedy": "cold greedy, all",
    "cold_greedy_model_calls": "  on model calls",
}


def format_edit_table(report: dict[str, Any]) -> str:
    env, speedup, exact = report["env"], report["speedup"], report["exact"]
    lines = [
        f"suite {report['suite']}: {report['requests']} requests in {len(report['files'])} "
        f"file(s), at most {report['settings']['max_new_tokens']} new tokens; {env['model']} "
        f"on {env['device']} {env['dtype']}, {env['threads']} threads",
        f"typed-ahead hits {report['typed_ahead_hits']}, model calls {report['model_calls']}; "
        f"prompt tokens reused {100 * report['reused_share']:.1f}%; exact "
        f"{exact['identical']}/{exact['compared']}; first line right "
        f"{report['offers_matching_line']}/{report['requests']}; method "
        f"{report['method']}, {report['tokens_per_forward']:.2f} tokens per forward",
        f"{'latency (ms)':<20}{'n':>5}{'p50':>10}{'p95':>10}{'mean':>10}",
    ]
    for key, label in _ROWS.items():
        row = report["latency_ms"][key]
        lines.append(f"{label:<20}{row['n']:>5}" + "".join(f"{row[k]:>10.1f}" for k in _STATS))
    lines.append(
        f"speedup vs cold greedy: p50 {speedup['p50']:.2f}x, mean {speedup['mean']:.2f}x "
        f"(model calls alone: p50 {speedup['model_calls_p50']:.2f}x, "
        f"mean {speedup['model_calls_mean']:.2f}x)"
    )
    methods = report.get("methods", {})
    if methods:
        first, *_ = methods.values()
        lines.append(f"{'method':<28}{'tokens/forward':>15}{'vs first':>10}{'calls p50 ms':>14}")
        for name, row in methods.items():
            ratio = row["tokens_per_forward"] / max(first["tokens_per_forward"], 1e-9)
            lines.append(
                f"{name:<28}{row['tokens_per_forward']:>15.2f}{ratio:>9.2f}x"
                f"{row['model_calls_ms']['p50']:>14.1f}  exact "
                f"{row['exact']['identical']}/{row['exact']['compared']}"
            )
    if report.get("calibration"):
        lines.append(f"calibration of {report['method']} (nodes whose parent was accepted):")
        lines += calibration_lines(report["calibration"])
    return "\n".join(lines)
