"""The port between the language server and whatever generates completions.

The server knows documents, positions and editors; the backend knows models, prompts and the
workspace index. The daemon implements `Backend` (daemon/service.py); tests may use a small fake.
Generation runs on the backend's own worker, never on the server's event loop or thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lsp.settings import Settings

__all__ = ["Backend", "CompletionRequest", "Generated", "StatusSink"]

# state, details (device, model, message, ...): starting | loading | indexing | ready | busy |
# error | disabled
StatusSink = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor
    path: Path | None  # the file, when the document is one on disk
    language: str
    settings: Settings
    stop: Callable[[str], bool]  # True once the text so far has its final shape
    document: str = ""  # the document's URI: what per-document state (KV rows) is kept under


@dataclass(frozen=True)
class Generated:
    text: str  # the raw completion (the server shapes it)
    tokens: int
    forwards: int  # model forwards it took, the prompt's included
    seconds: float
    reused_tokens: int  # prompt tokens whose KV rows came from the previous request
    stop_reason: str
    # where `seconds` went, for the latency report: queued behind other model work, running
    # the prompt's new rows (`prefilled` of them), the rest decoding
    waited_s: float = 0.0
    prefill_s: float = 0.0
    prefilled: int = 0
    # answered from the short prompt of a cold document (Settings.cold_prefix_tokens)
    short_prompt: bool = False


class Backend(Protocol):
    def start(self, settings: Settings, status: StatusSink) -> None:
        """Load the model and whatever else, in the background, reporting through `status`."""

    def configure(self, settings: Settings) -> None: ...

    def complete(self, request: CompletionRequest, cancel: threading.Event) -> Future[Generated]:
        """Queue a generation; setting `cancel` stops it within one decode step."""

    def warm(self, request: CompletionRequest) -> None:
        """Nothing is asked yet, but the cursor is here: prepare (prefill the prompt) so the
        request that follows is fast. The lowest priority: any completion cancels it."""

    def add_folder(self, folder: Path) -> None: ...

    def remove_folder(self, folder: Path) -> None: ...

    def buffer_changed(self, path: Path, text: str) -> None:
        """An open document's text changed (unsaved text wins over the file on disk)."""

    def buffer_closed(self, path: Path) -> None: ...

    def file_saved(self, path: Path) -> None: ...

    def reindex(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...
