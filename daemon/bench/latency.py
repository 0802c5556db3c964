"""`codeswift bench --suite lsp`: editor latencies measured through the real server.

`codeswift serve` runs as a subprocess and a pygls client drives it over stdio, as an editor
would. In real files of the workspace (default: this package's own sources) it rewrites one
line of a function body key by key, asking for a completion after every key, and times:
  * the first request in a file: asked at once after opening it (its whole prompt
    prefilled), and asked after the cursor rested there for `REST_S` (the client said so with
    `codeswift/cursor`, as the editor plugins do, and the server warmed the prompt meanwhile),
  * single-line completions after a key the showing completion did not predict (a model call,
    with the previous request's KV rows reused),
  * typed-ahead hits (the key was the next character of what was showing),
  * a block at the start of the next line (64 new tokens; answered with its first line as soon
    as that is decided),
  * taking what is on offer, twice (Tab, Tab, each after READ_S of reading), each time
    asking at its end (the rest of the block, then the server's prediction of what follows),
  * a cancellation (from `$/cancelRequest` to the -32800 answer, mid-generation),
  * an unrelated request answered while a generation runs (`codeswift.stats`),
  * the server's CPU use while nothing is typed, at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

import daemon
from daemon.errors import UsageError

__all__ = ["inline_params", "json_field", "latency_summary", "run_lsp_bench"]

_SAMPLES = 12
# a user's pause between opening a file (or putting the cursor somewhere) and the first key
REST_S = 2.0
# how long a user looks at a block on offer before taking it with Tab
READ_S = 0.6


def run_lsp_bench(
    model: str, workspace: Path | None, limit: int, seed: int, context_tokens: int = 0
) -> dict[str, Any]:
    folder = workspace or Path(daemon.__file__).resolve().parent
    files = sorted(p for p in folder.rglob("*.py") if p.stat().st_size > 500)
    if not files:
        raise UsageError(f"--suite lsp needs Python files in {folder}")
    samples = min(limit, _SAMPLES) if limit else _SAMPLES
    rng = random.Random(seed)
    return asyncio.run(_bench(model, folder, files, samples, rng, context_tokens))


async def _bench(
    model: str,
    folder: Path,
    files: list[Path],
    samples: int,
    rng: random.Random,
    context_tokens: int,
) -> dict[str, Any]:
    client = LanguageClient("codeswift-bench", "0")
    ready = asyncio.Event()

    @client.feature("codeswift/status")
    def status(ls: LanguageClient, params: Any) -> None:
        if getattr(params, "state", None) == "ready":
            ready.set()

    await client.start_io(sys.executable, "-m", "daemon", "serve", "--model", model)
    options = {
        "debounceMs": 0,
        "maxNewTokens": 48,
        "timeoutMs": 60000,
        "contextTokens": context_tokens,
    }
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            workspace_folders=[types.WorkspaceFolder(folder.as_uri(), folder.name)],
            initialization_options=options,
        )
    )
    client.initialized(types.InitializedParams())
    await asyncio.wait_for(ready.wait(), 300)
    try:
        results: dict[str, list[float]] = {
            "first": [],
            "first_rested": [],
            "single": [],
            "typed": [],
            "block": [],
            "after_taking": [],
            "cancel": [],
            "unrelated": [],
        }
        breakdowns: list[dict[str, Any]] = []  # the server's account of each single line
        firsts: list[dict[str, Any]] = []  # and of each first request in a file
        for number in range(samples):
            path = files[rng.randrange(len(files))]
            await _replay_line(client, path, number, rng, results, breakdowns, firsts)
        stats = await client.workspace_execute_command_async(
            types.ExecuteCommandParams("codeswift.stats")
        )
        backend = json_field(stats, "backend")
        idle = await _idle_cpu_percent(int(json_field(backend, "pid")))
        return {
            "suite": "lsp",
            "prompt_tokens": json_field(backend, "promptTokens"),
            "reused_prompt_tokens": json_field(backend, "reusedPromptTokens"),
            "model_requests": json_field(backend, "requests"),
            "workspace": folder.name,  # a name: reports are committed, machine paths are not
            "files": samples,
            "context_tokens": context_tokens,
            "first_request_in_file_ms": latency_summary(results["first"]),
            "first_request_parts": _parts(firsts),
            "first_request_samples": firsts,
            "short_answers": json_field(backend, "shortAnswers"),
            "first_request_after_rest_ms": latency_summary(results["first_rested"]),
            "rest_s": REST_S,
            "read_s": READ_S,
            "warmed_rows": json_field(backend, "warmedRows"),
            "warm_hits": json_field(backend, "warmHits"),
            "early_answers": json_field(stats, "earlyAnswers"),
            "single_line_ms": latency_summary(results["single"]),
            "single_line_parts": _parts(breakdowns),
            "single_line_samples": breakdowns,  # each request's latency beside its parts
            "typed_ahead_ms": latency_summary(results["typed"]),
            "block_64_ms": latency_summary(results["block"]),
            "after_taking_an_offer_ms": latency_summary(results["after_taking"]),
            "predictions": json_field(stats, "predictions"),
            "cancel_ack_ms": latency_summary(results["cancel"]),
            "unrelated_during_generation_ms": latency_summary(results["unrelated"]),
            "idle_cpu_percent": idle,
        }
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


async def _replay_line(
    client: LanguageClient,
    path: Path,
    number: int,
    rng: random.Random,
    results: dict[str, list[float]],
    breakdowns: list[dict[str, Any]],
    firsts: list[dict[str, Any]],
) -> None:
    """Write one real line of `path` key by key, asking for a completion after each key, as
    an editor does; then start the next line (a block request), then cancel a long one."""
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = [i for i, line in enumerate(lines) if len(line.strip()) > 12 and line.startswith("    ")]
    if not rows:
        return
    row = rng.choice(rows)
    target = lines[row]
    indent = len(target) - len(target.lstrip())
    # fresh documents: nothing cached from earlier samples
    cold = _Document(client, f"{path.as_uri()}#{number}-cold", lines, row, target[:indent])
    elapsed, _ = await cold.ask()
    results["first"].append(elapsed)
    deadline = time.monotonic() + 60
    while (last := await _last_generation(client)).get("uri") != cold.uri:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)  # a block answered early is generated on
    firsts.append({"ms": round(elapsed, 1), **_without_uri(last)})
    uri = f"{path.as_uri()}#{number}"
    document = _Document(client, uri, lines, row, target[:indent])
    document.rest()
    await asyncio.sleep(REST_S)
    elapsed, shown = await document.ask()
    results["first_rested"].append(elapsed)
    for column in range(indent + 1, min(len(target), indent + 16) + 1):
        expected_hit = bool(shown) and shown[0] == target[column - 1]
        document.type(target[:column])
        elapsed, shown = await document.ask()
        results["typed" if expected_hit else "single"].append(elapsed)
        if not expected_hit:
            last = _without_uri(await _last_generation(client))
            breakdowns.append({"ms": round(elapsed, 1), **last})
    document.type(target)
    document.new_line(" " * indent)
    _change_config(client, {"maxNewTokens": 64})
    elapsed, shown = await document.ask()
    results["block"].append(elapsed)
    for _ in range(2):  # Tab, and Tab again: what follows each taken offer
        if not shown:
            break
        await asyncio.sleep(READ_S)
        document.take(shown)
        elapsed, shown = await document.ask()
        results["after_taking"].append(elapsed)
    cancelled, unrelated = await _cancel(client, uri, types.Position(row, 0))
    results["cancel"].append(cancelled)
    results["unrelated"].append(unrelated)


class _Document:
    """A document being written at one line, synced to the server as full-text changes."""

    def __init__(
        self, client: LanguageClient, uri: str, lines: list[str], row: int, text: str
    ) -> None:
        self.client, self.uri, self.lines, self.row = client, uri, list(lines), row
        self.lines[row] = text
        self.version = 1
        item = types.TextDocumentItem(uri, "python", 1, "\n".join(self.lines))
        client.text_document_did_open(types.DidOpenTextDocumentParams(item))

    def type(self, line: str) -> None:
        self.lines[self.row] = line
        self._sync()

    def new_line(self, indentation: str) -> None:
        self.row += 1
        self.lines.insert(self.row, indentation)
        self._sync()

    def _sync(self) -> None:
        self.version += 1
        change = types.TextDocumentContentChangeWholeDocument("\n".join(self.lines))
        identifier = types.VersionedTextDocumentIdentifier(version=self.version, uri=self.uri)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(identifier, [change])
        )

    async def ask(self) -> tuple[float, str]:
        return await _timed_text(self.client, self.uri, self._cursor())

    def take(self, offered: str) -> None:
        """The user takes the completion on offer: its text is inserted at the cursor."""
        line = self.lines[self.row] + offered
        added = line.split("\n")
        self.lines[self.row : self.row + 1] = added
        self.row += len(added) - 1
        self._sync()

    def rest(self) -> None:
        """The cursor rests at the end of the line being written (`codeswift/cursor`)."""
        place = self._cursor()
        params = {
            "textDocument": {"uri": self.uri},
            "position": {"line": place.line, "character": place.character},
        }
        self.client.protocol.notify("codeswift/cursor", params)

    def _cursor(self) -> types.Position:
        line = self.lines[self.row]
        return types.Position(self.row, len(line.encode("utf-16-le")) // 2)


def _change_config(client: LanguageClient, settings: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings))


def inline_params(uri: str, position: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
        text_document=types.TextDocumentIdentifier(uri),
        position=position,
    )


async def _timed_text(
    client: LanguageClient, uri: str, position: types.Position
) -> tuple[float, str]:
    started = time.perf_counter()
    result = await client.text_document_inline_completion_async(inline_params(uri, position))
    elapsed = (time.perf_counter() - started) * 1000
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    text = items[0].insert_text if items else ""
    return elapsed, text if isinstance(text, str) else text.value


async def _last_generation(client: LanguageClient) -> dict[str, Any]:
    """The server's account of its latest generation: queue wait, prefill, decode."""
    stats = await client.workspace_execute_command_async(
        types.ExecuteCommandParams("codeswift.stats")
    )
    last = json_field(stats, "lastGeneration")
    fields = ("waitedMs", "prefillMs", "prefilledRows", "decodeMs", "tokens", "forwards")
    if last is None:
        return {}
    return {name: json_field(last, name) for name in fields} | {
        "shortPrompt": bool(json_field(last, "shortPrompt")),
        "uri": json_field(last, "uri"),
    }


def _without_uri(generation: dict[str, Any]) -> dict[str, Any]:
    """A generation's account for the report: reports are committed, machine paths are not."""
    return {name: value for name, value in generation.items() if name != "uri"}


def _parts(breakdowns: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """p50 / p95 of each part of the single-line generations."""
    names = sorted({name for b in breakdowns for name in b} - {"ms", "shortPrompt"})
    return {
        name: latency_summary([float(b[name]) for b in breakdowns if name in b]) for name in names
    }


async def _cancel(
    client: LanguageClient, uri: str, position: types.Position
) -> tuple[float, float]:
    """Start a long generation; time an unrelated request, then the cancellation."""
    _change_config(client, {"multiline": "always", "maxNewTokens": 400})
    msg_id = f"bench-{time.monotonic_ns()}"
    shifted = types.Position(position.line, 0)  # a new place: no offer to reuse
    future = client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, shifted), msg_id=msg_id
    )
    await asyncio.sleep(0.6)
    started = time.perf_counter()
    await client.workspace_execute_command_async(types.ExecuteCommandParams("codeswift.stats"))
    unrelated = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    with contextlib.suppress(JsonRpcException):  # -32800 is the answer we wait for
        await future
    cancelled = (time.perf_counter() - started) * 1000
    _change_config(client, {"multiline": "auto", "maxNewTokens": 48})
    return cancelled, unrelated


async def _idle_cpu_percent(pid: int, settle_s: float = 5.0, window_s: float = 10.0) -> float:
    """The server's CPU use (percent of one core) over `window_s` while nothing is typed,
    once `settle_s` has let the last generations and warm-ups end."""
    await asyncio.sleep(settle_s)
    before = _cpu_seconds(pid)
    await asyncio.sleep(window_s)
    return round(100 * (_cpu_seconds(pid) - before) / window_s, 2)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def json_field(value: Any, name: str) -> Any:
    """A field of a JSON object as pygls hands it over (a dict or an attribute object)."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def latency_summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": -1.0, "p95": -1.0, "n": 0}
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "n": len(ordered),
    }
