"""The codeswift language server (pygls): thin handlers over the completion pipeline and the
backend port.

Inline completions (`textDocument/inlineCompletion`, advertised through
`InlineCompletionOptions`: pygls leaves it out without them) and a `textDocument/completion`
fallback for clients without inline support. Handlers are async and await the backend's own
worker, so pygls' reader keeps reading (a `$/cancelRequest` lands at once) and an unrelated
request is answered while a generation runs. stdout belongs to the protocol; logs go to stderr
and, for what a user should see, to `window/logMessage`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from lsp.backend import Backend, Generated
from lsp.completions import Completer, Cursor
from lsp.settings import Settings, parse_settings
from lsp.typeahead import Offer

__all__ = ["CURSOR_METHOD", "STATUS_METHOD", "CodeswiftServer", "build_server", "indent_style"]

logger = logging.getLogger(__name__)

STATUS_METHOD = "codeswift/status"
# client -> server notification: the cursor rests at {textDocument: {uri}, position} and
# nothing is asked yet (a file opened or focused, the cursor moved and idle)
CURSOR_METHOD = "codeswift/cursor"
ACCEPT = "codeswift.accept"
REINDEX = "codeswift.reindex"
TOGGLE = "codeswift.toggle"
STATS = "codeswift.stats"
_PROGRESS_TOKEN = "codeswift-startup"


class CodeswiftServer(LanguageServer):
    """pygls server plus what the handlers share: settings, backend, pipeline, status."""

    def __init__(self, backend: Backend, version: str) -> None:
        super().__init__("codeswift", version)
        self.backend = backend
        self.settings = Settings()
        self.enabled = True
        self.completer = Completer(backend, lambda: self.settings)
        self.status: dict[str, Any] = {"state": "starting"}
        self.folders: set[Path] = set()
        self._progress = "closed"  # work-done progress: closed | opening | open
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def shutdown(self) -> None:
        """pygls' own shutdown waits for its thread pool, where the stdin reader may sit in a
        read for as long as the client keeps the pipe open: an interrupted server never ended."""
        pool, self._thread_pool = self._thread_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        super().shutdown()

    # -- status (backend threads call `report`) ---------------------------------------------

    def report(self, state: str, details: Mapping[str, Any]) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._publish, state, dict(details))

    def _publish(self, state: str, details: dict[str, Any]) -> None:
        if not self.enabled and state == "ready":
            state = "disabled"
        kept: dict[str, Any] = {
            k: self.status[k] for k in ("model", "device", "dtype") if k in self.status
        }
        self.status = {**kept, **details, "state": state, **self._figures()}
        self.protocol.notify(STATUS_METHOD, self.status)
        if state == "error":
            self.log(types.MessageType.Error, f"codeswift: {details.get('message', 'error')}")
        self._progress_for(state, details)

    def _figures(self) -> dict[str, Any]:
        done = self.completer.generated
        forwards = sum(g.forwards for g in done)
        return {
            "lastLatencyMs": round(self.completer.latencies_ms[-1], 1)
            if self.completer.latencies_ms
            else None,
            "meanAccepted": round(sum(g.tokens for g in done) / forwards, 2) if forwards else None,
            "offered": self.completer.offered,
            "accepted": self.completer.accepted,
            "acceptRate": round(self.completer.accepted / self.completer.offered, 3)
            if self.completer.offered
            else None,
        }

    def _progress_for(self, state: str, details: Mapping[str, Any]) -> None:
        """Model loading and indexing as LSP work-done progress, when the client shows it."""
        window = self.client_capabilities.window
        if window is None or not window.work_done_progress:
            return
        message = str(details.get("message", state))
        busy = state in ("loading", "indexing")
        if busy and self._progress == "closed":
            self._progress = "opening"
            task = asyncio.ensure_future(self._begin_progress(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif busy and self._progress == "open":
            done, total = details.get("done"), details.get("total")
            percentage = int(100 * done / total) if done is not None and total else None
            report = types.WorkDoneProgressReport(message=message, percentage=percentage)
            self.work_done_progress.report(_PROGRESS_TOKEN, report)
        elif not busy and self._progress == "open":
            self._progress = "closed"
            self.work_done_progress.end(_PROGRESS_TOKEN, types.WorkDoneProgressEnd(message=state))

    async def _begin_progress(self, message: str) -> None:
        try:
            await self.work_done_progress.create_async(_PROGRESS_TOKEN)
        except Exception as exc:  # a client may refuse; progress is a nicety
            logger.info("no work-done progress: %s", exc)
            self._progress = "closed"
            return
        begin = types.WorkDoneProgressBegin(title="codeswift", message=message, percentage=0)
        self.work_done_progress.begin(_PROGRESS_TOKEN, begin)
        self._progress = "open"
        if self.status.get("state") not in ("loading", "indexing"):  # ended while opening
            self._progress_for(str(self.status.get("state")), {})

    def log(self, kind: types.MessageType, message: str) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    # -- settings and folders ---------------------------------------------------------------

    def apply_settings(self, options: Any) -> None:
        settings, problems = parse_settings(options, self.settings)
        for problem in problems:
            self.log(types.MessageType.Warning, f"codeswift: {problem}")
        if _sends_log_level(options):  # otherwise the command line's -v stands
            logging.getLogger().setLevel(settings.log_level.upper())
        if settings != self.settings:
            self.settings = settings
            self.backend.configure(settings)

    def add_folder(self, uri: str) -> None:
        path = uri_path(uri)
        if path is not None and path not in self.folders:
            self.folders.add(path)
            self.backend.add_folder(path)

    def remove_folder(self, uri: str) -> None:
        path = uri_path(uri)
        if path is not None and path in self.folders:
            self.folders.discard(path)
            self.backend.remove_folder(path)

    # -- completion -------------------------------------------------------------------------

    async def offer_at(
        self, uri: str, position: types.Position, invoked: bool, formatting: Any = None
    ) -> Offer | None:
        if not (self.enabled and self.settings.enable):  # the toggle, or the `enable` setting
            return None
        if not (invoked or self.settings.auto_trigger):
            return None
        cursor = self.cursor_at(uri, position, invoked, formatting)
        if cursor is None:
            return None  # never opened: nothing to complete
        version, source = cursor.version, cursor.prefix + cursor.suffix

        def is_current() -> bool:
            now = self.workspace.text_documents.get(uri)
            return now is not None and now.version == version and now.source == source

        return await self.completer.complete(cursor, is_current)

    def warm_at(self, uri: str, position: types.Position) -> bool:
        """The client says the cursor rests here: prefill what a request here would need."""
        if not (self.enabled and self.settings.enable):
            return False
        cursor = self.cursor_at(uri, position, invoked=False)
        return cursor is not None and self.completer.warm(cursor)

    def cursor_at(
        self, uri: str, position: types.Position, invoked: bool, formatting: Any = None
    ) -> Cursor | None:
        document = self.workspace.text_documents.get(uri)
        if document is None:
            return None
        source = document.source
        offset = _offset(document, position)
        tab_size, spaces = indent_style(formatting, source)
        return Cursor(
            uri=uri,
            version=document.version,
            prefix=source[:offset],
            suffix=source[offset:],
            path=uri_path(uri),
            language=document.language_id or "plaintext",
            tab_size=tab_size,
            insert_spaces=spaces,
            invoked=invoked,
        )


def _sends_log_level(options: Any) -> bool:
    if isinstance(options, Mapping) and isinstance(options.get("codeswift"), Mapping):
        options = options["codeswift"]
    return isinstance(options, Mapping) and "logLevel" in options


def build_server(backend: Backend, version: str) -> CodeswiftServer:
    server = CodeswiftServer(backend, version)

    @server.feature(types.INITIALIZE)
    def initialize(ls: CodeswiftServer, params: types.InitializeParams) -> None:
        ls.apply_settings(params.initialization_options)
        for folder in params.workspace_folders or []:
            ls.add_folder(folder.uri)
        if not params.workspace_folders and params.root_uri:
            ls.add_folder(params.root_uri)

    @server.feature(types.INITIALIZED)
    def initialized(ls: CodeswiftServer, params: types.InitializedParams) -> None:
        ls._loop = asyncio.get_running_loop()
        ls.backend.start(ls.settings, ls.report)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CodeswiftServer, params: Any) -> None:
        ls.completer.cancel_all()
        ls.backend.shutdown()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodeswiftServer, params: types.DidOpenTextDocumentParams) -> None:
        _buffer_changed(ls, params.text_document.uri)

    @server.feature(CURSOR_METHOD)
    def cursor(ls: CodeswiftServer, params: Any) -> None:
        place = _cursor_params(params)
        if place is None:
            ls.log(types.MessageType.Warning, f"codeswift: bad {CURSOR_METHOD} params")
            return
        ls.warm_at(*place)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodeswiftServer, params: types.DidChangeTextDocumentParams) -> None:
        _buffer_changed(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: CodeswiftServer, params: types.DidSaveTextDocumentParams) -> None:
        path = uri_path(params.text_document.uri)
        if path is not None:
            ls.backend.file_saved(path)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodeswiftServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.completer.forget(params.text_document.uri)
        path = uri_path(params.text_document.uri)
        if path is not None:
            ls.backend.buffer_closed(path)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: CodeswiftServer, params: types.DidChangeConfigurationParams
    ) -> None:
        ls.apply_settings(params.settings)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(
        ls: CodeswiftServer, params: types.DidChangeWorkspaceFoldersParams
    ) -> None:
        for folder in params.event.removed:
            ls.remove_folder(folder.uri)
        for folder in params.event.added:
            ls.add_folder(folder.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CodeswiftServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        formatting = getattr(params, "formatting_options", None)
        offer = await ls.offer_at(params.text_document.uri, params.position, invoked, formatting)
        if offer is None:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=offer.text,
            range=types.Range(params.position, params.position),
            command=types.Command("codeswift: accepted", ACCEPT, arguments=[offer.completion_id]),
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: CodeswiftServer, params: types.CompletionParams
    ) -> types.CompletionList:
        offer = await ls.offer_at(params.text_document.uri, params.position, invoked=True)
        if offer is None:
            return types.CompletionList(is_incomplete=True, items=[])
        first = offer.text.split("\n", 1)[0] or offer.text.strip()
        item = types.CompletionItem(
            label=first.strip()[:80] or "codeswift",
            kind=types.CompletionItemKind.Text,
            detail="codeswift",
            text_edit=types.TextEdit(types.Range(params.position, params.position), offer.text),
            command=types.Command("codeswift: accepted", ACCEPT, arguments=[offer.completion_id]),
            sort_text="0",
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.command(ACCEPT)
    def accept(ls: CodeswiftServer, *args: Any) -> None:
        ls.completer.accepted += 1
        ls._publish(ls.status.get("state", "ready"), {})

    @server.command(TOGGLE)
    def toggle(ls: CodeswiftServer, *args: Any) -> dict[str, bool]:
        ls.enabled = not ls.enabled
        if not ls.enabled:
            ls.completer.cancel_all()
        ls._publish("ready" if ls.enabled else "disabled", {})
        return {"enabled": ls.enabled}

    @server.command(REINDEX)
    def reindex(ls: CodeswiftServer, *args: Any) -> None:
        ls.backend.reindex()

    @server.command(STATS)
    def stats(ls: CodeswiftServer, *args: Any) -> dict[str, Any]:
        latencies = sorted(ls.completer.latencies_ms)
        return {
            **ls.status,
            "enabled": ls.enabled,
            "typedAheadHits": ls.completer.offers.hits,
            "earlyAnswers": ls.completer.early_answers,
            "warmups": ls.completer.warmups,
            "predictions": ls.completer.predictions,
            "latencyP50Ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "lastGeneration": _breakdown(ls.completer.generated[-1], ls.completer.last_generated_in)
            if ls.completer.generated
            else None,
            "backend": ls.backend.stats(),
        }

    return server


def _breakdown(generated: Generated, uri: str) -> dict[str, Any]:
    """Where one generation's time went, in ms (the latency bench reads it)."""
    seconds = generated.seconds
    return {
        "uri": uri,
        "waitedMs": round(generated.waited_s * 1000, 1),
        "prefillMs": round(generated.prefill_s * 1000, 1),
        "prefilledRows": generated.prefilled,
        "shortPrompt": generated.short_prompt,
        "decodeMs": round((seconds - generated.prefill_s) * 1000, 1),
        "tokens": generated.tokens,
        "forwards": generated.forwards,
        "stopReason": generated.stop_reason,
    }


def _cursor_params(params: Any) -> tuple[str, types.Position] | None:
    """(uri, position) of a `codeswift/cursor` notification, None when malformed."""

    def field(value: Any, name: str) -> Any:
        return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)

    uri = field(field(params, "textDocument"), "uri")
    position = field(params, "position")
    line, character = field(position, "line"), field(position, "character")
    if not isinstance(uri, str) or not isinstance(line, int) or not isinstance(character, int):
        return None
    if line < 0 or character < 0:
        return None
    return uri, types.Position(line, character)


def _buffer_changed(ls: CodeswiftServer, uri: str) -> None:
    path = uri_path(uri)
    document = ls.workspace.text_documents.get(uri)
    if path is not None and document is not None:
        ls.backend.buffer_changed(path, document.source)


def uri_path(uri: str) -> Path | None:
    """The file of a `file:` URI (None for untitled buffers and other schemes)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def _offset(document: Any, position: types.Position) -> int:
    """The text offset of a client position, clamped: a position past the end of its line is
    the line's end, one past the last line is the end of the text."""
    lines = document.lines
    if position.line >= len(lines):
        return len(document.source)
    line = lines[position.line]
    content = line.rstrip("\r\n")
    units = len(content.encode("utf-16-le")) // 2  # the most a client may count on this line
    clamped = types.Position(position.line, min(max(position.character, 0), units))
    offset: int = document.offset_at_position(clamped)
    start = sum(len(text) for text in lines[: position.line])
    return min(offset, start + len(content))


def indent_style(options: Any, source: str) -> tuple[int, bool]:
    """(tab size, insert spaces): the client's when it sends them (Copilot-style
    `formattingOptions`), else what the document itself uses."""
    if options is None:
        tabs = sum(1 for line in source.splitlines() if line.startswith("\t"))
        spaces = sum(1 for line in source.splitlines() if line.startswith(" "))
        return 4, tabs <= spaces
    if isinstance(options, Mapping):
        return int(options.get("tabSize", 4)), bool(options.get("insertSpaces", True))
    return int(getattr(options, "tab_size", 4)), bool(getattr(options, "insert_spaces", True))
