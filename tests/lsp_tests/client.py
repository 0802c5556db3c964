"""A real LSP client (pygls) driving `codeswift serve` as a subprocess over stdio."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from tests.conftest import REPO

__all__ = ["Session", "position_at_end"]

_ids = itertools.count(1000)


class Session:
    """One server process, its status notifications and log messages."""

    def __init__(self) -> None:
        self.client = LanguageClient("codeswift-tests", "0")
        self.statuses: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.versions: dict[str, int] = {}

        @self.client.feature("codeswift/status")
        def status(ls: LanguageClient, params: Any) -> None:
            self.statuses.append(_plain(params))

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def log(ls: LanguageClient, params: types.LogMessageParams) -> None:
            self.logs.append(params.message)

    async def start(
        self, workspace: Path, options: dict[str, Any], *serve_args: str
    ) -> types.InitializeResult:
        await self.client.start_io(sys.executable, "-m", "daemon", "serve", *serve_args, cwd=REPO)
        capabilities = types.ClientCapabilities(
            window=types.WindowClientCapabilities(work_done_progress=True)
        )
        result = await self.client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities,
                workspace_folders=[types.WorkspaceFolder(workspace.as_uri(), workspace.name)],
                initialization_options=options,
            )
        )
        self.client.initialized(types.InitializedParams())
        return result

    async def wait_status(self, state: str, timeout: float = 120) -> dict[str, Any]:
        return await self.wait_for(
            lambda: next((s for s in self.statuses if s.get("state") == state), None), timeout
        )

    async def wait_for(self, probe: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s")

    def open(self, path: Path, text: str, language: str = "python") -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        item = types.TextDocumentItem(uri, language, 1, text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        return uri

    def replace(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        change = types.TextDocumentContentChangeWholeDocument(text=text)
        identifier = types.VersionedTextDocumentIdentifier(version=self.versions[uri], uri=uri)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(identifier, [change])
        )

    def inline_request(
        self, uri: str, line: int, character: int, invoked: bool = True
    ) -> tuple[int, asyncio.Future[Any]]:
        """Send textDocument/inlineCompletion with our own id (so it can be cancelled)."""
        kind = types.InlineCompletionTriggerKind
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=kind.Invoked if invoked else kind.Automatic
            ),
            text_document=types.TextDocumentIdentifier(uri),
            position=types.Position(line, character),
        )
        msg_id = next(_ids)
        future = self.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
        )
        return msg_id, future

    async def inline(self, uri: str, line: int, character: int) -> list[str]:
        _, future = self.inline_request(uri, line, character)
        result = await asyncio.wait_for(future, 120)
        return [item.insert_text for item in result.items]

    def cursor(self, uri: str, line: int, character: int) -> None:
        """`codeswift/cursor`: the cursor rests here, nothing asked yet (the server warms)."""
        params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        self.client.protocol.notify("codeswift/cursor", params)

    def configure(self, options: dict[str, Any]) -> None:
        """workspace/didChangeConfiguration with `options`."""
        params = types.DidChangeConfigurationParams(settings=options)
        self.client.workspace_did_change_configuration(params)

    def cancel(self, msg_id: int) -> None:
        self.client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))

    async def command(self, name: str, *arguments: Any) -> Any:
        params = types.ExecuteCommandParams(name, list(arguments))
        return _plain(await self.client.workspace_execute_command_async(params))

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 20)
            self.client.exit(None)
        finally:
            await self.client.stop()


def position_at_end(text: str) -> tuple[int, int]:
    """The LSP position (UTF-16 columns) at the end of `text`."""
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2


def _plain(value: Any) -> Any:
    """pygls hands unknown payloads over as attribute objects; tests read plain data."""
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value
