"""`codeswift bench --suite lsp`: editor latencies measured through the real server.

`codeswift serve` runs as a subprocess and a pygls client drives it over stdio, as an editor
would. On real files of the workspace (default: this package's own sources) it times, warm:
  * a single-line completion (cursor in the middle of a line),
  * a block (cursor on a fresh line inside a function, 64 new tokens, multi-line),
  * a typed-ahead hit (the user types the first characters of what is showing),
  * a cancellation (the time from `$/cancelRequest` to the -32800 answer, mid-generation),
  * an unrelated request answered while a generation runs (`codeswift.stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from daemon.errors import UsageError

__all__ = ["run_lsp_bench"]

_SAMPLES = 12


def run_lsp_bench(model: str, workspace: Path | None, limit: int, seed: int) -> dict[str, Any]:
    folder = workspace or Path(__file__).resolve().parent
    files = sorted(p for p in folder.rglob("*.py") if p.stat().st_size > 500)
    if not files:
        raise UsageError(f"--suite lsp needs Python files in {folder}")
    samples = min(limit, _SAMPLES) if limit else _SAMPLES
    return asyncio.run(_bench(model, folder, files, samples, random.Random(seed)))


async def _bench(
    model: str, folder: Path, files: list[Path], samples: int, rng: random.Random
) -> dict[str, Any]:
    client = LanguageClient("codeswift-bench", "0")
    ready = asyncio.Event()

    @client.feature("codeswift/status")
    def status(ls: LanguageClient, params: Any) -> None:
        if getattr(params, "state", None) == "ready":
            ready.set()

    await client.start_io(sys.executable, "-m", "daemon", "serve", "--model", model)
    options = {"debounceMs": 0, "maxNewTokens": 64, "timeoutMs": 60000}
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
        single, block, typed, cancel, unrelated = [], [], [], [], []
        for number in range(samples):
            path = files[rng.randrange(len(files))]
            text = path.read_text(encoding="utf-8")
            uri = f"{path.as_uri()}#{number}"  # a fresh document each time: no offer reuse
            _open(client, uri, text)
            mid_line, fresh_line = _positions(text, rng)
            single.append((await _timed_text(client, uri, mid_line))[0])
            _change_config(client, {"multiline": "always"})
            block_ms, shown = await _timed_text(client, uri, fresh_line)
            block.append(block_ms)
            if len(shown) > 3:
                typed.append(await _typed_ahead(client, uri, text, fresh_line, shown[:2]))
            _change_config(client, {"multiline": "auto"})
            cancel_ms, unrelated_ms = await _cancel(client, uri, fresh_line)
            cancel.append(cancel_ms)
            unrelated.append(unrelated_ms)
        return {
            "suite": "lsp",
            "workspace": str(folder),
            "requests": samples,
            "single_line_ms": _summary(single),
            "block_64_ms": _summary(block),
            "typed_ahead_ms": _summary(typed),
            "cancel_ack_ms": _summary(cancel),
            "unrelated_during_generation_ms": _summary(unrelated),
        }
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


def _positions(text: str, rng: random.Random) -> tuple[types.Position, types.Position]:
    """A cursor in the middle of a code line, and one at the start of a body line."""
    lines = text.split("\n")
    code = [i for i, line in enumerate(lines) if len(line.strip()) > 12 and line.startswith("    ")]
    row = rng.choice(code) if code else 0
    column = len(lines[row]) // 2
    mid = types.Position(row, len(lines[row][:column].encode("utf-16-le")) // 2)
    indent = len(lines[row]) - len(lines[row].lstrip())
    return mid, types.Position(row, indent)


def _open(client: LanguageClient, uri: str, text: str) -> None:
    item = types.TextDocumentItem(uri, "python", 1, text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(item))


def _change_config(client: LanguageClient, settings: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings))


def _request(uri: str, position: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
        text_document=types.TextDocumentIdentifier(uri),
        position=position,
    )


async def _timed_text(
    client: LanguageClient, uri: str, position: types.Position
) -> tuple[float, str]:
    started = time.perf_counter()
    result = await client.text_document_inline_completion_async(_request(uri, position))
    elapsed = (time.perf_counter() - started) * 1000
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    text = items[0].insert_text if items else ""
    return elapsed, text if isinstance(text, str) else text.value


async def _typed_ahead(
    client: LanguageClient, uri: str, text: str, position: types.Position, typed: str
) -> float:
    lines = text.split("\n")
    lines[position.line] = lines[position.line][: position.character] + typed
    change = types.TextDocumentContentChangeWholeDocument("\n".join(lines))
    identifier = types.VersionedTextDocumentIdentifier(version=2, uri=uri)
    client.text_document_did_change(types.DidChangeTextDocumentParams(identifier, [change]))
    moved = types.Position(position.line, position.character + len(typed))
    return (await _timed_text(client, uri, moved))[0]


async def _cancel(
    client: LanguageClient, uri: str, position: types.Position
) -> tuple[float, float]:
    """Start a long generation; time an unrelated request, then the cancellation."""
    _change_config(client, {"multiline": "always", "maxNewTokens": 400})
    msg_id = f"bench-{time.monotonic_ns()}"
    shifted = types.Position(position.line, 0)  # a new place: no offer to reuse
    future = client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, _request(uri, shifted), msg_id=msg_id
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
    _change_config(client, {"multiline": "auto", "maxNewTokens": 64})
    return cancelled, unrelated


def _summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": -1.0, "p95": -1.0, "n": 0}
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "n": len(ordered),
    }
