"""The completion pipeline against a small scripted backend: blocks answered with their first
line while the rest is generated, typing into such an answer, and warm-ups.

The real server and model run the same paths in test_server_e2e.py; here the timing is scripted,
so what is checked is the order of events, fast and without a model."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from lsp.backend import CompletionRequest, Generated, StatusSink
from lsp.completions import PREDICT_AFTER_S, Completer, Cursor
from lsp.settings import Settings

BLOCK = "total = a + 1\n    total *= 2\n    return total\n\ndef g():\n"
PREFIX = "def f(a):\n    "


class ScriptedBackend:
    """Generates `text` in pieces of `piece` characters, `delay` seconds apart, asking the
    request's stop rule after each piece as the engine does after each step."""

    def __init__(self, text: str, piece: int = 6, delay: float = 0.05) -> None:
        self.text, self.piece, self.delay = text, piece, delay
        self.requests: list[CompletionRequest] = []
        self.warmed: list[CompletionRequest] = []
        self.cancelled: list[bool] = []

    def complete(self, request: CompletionRequest, cancel: threading.Event) -> Future[Generated]:
        self.requests.append(request)
        future: Future[Generated] = Future()

        def run() -> None:
            made, reason = "", "max_new_tokens"
            for end in range(self.piece, len(self.text) + self.piece, self.piece):
                time.sleep(self.delay)
                if cancel.is_set():
                    reason = "cancelled"
                    break
                made = self.text[:end]
                if request.stop(made):
                    reason = "shape"
                    break
            self.cancelled.append(cancel.is_set())
            future.set_result(Generated(made, len(made), len(made), 0.0, 0, reason))

        threading.Thread(target=run, daemon=True).start()
        return future

    def warm(self, request: CompletionRequest) -> None:
        self.warmed.append(request)

    def start(self, settings: Settings, status: StatusSink) -> None: ...
    def configure(self, settings: Settings) -> None: ...
    def add_folder(self, folder: Path) -> None: ...
    def remove_folder(self, folder: Path) -> None: ...
    def buffer_changed(self, path: Path, text: str) -> None: ...
    def buffer_closed(self, path: Path) -> None: ...
    def file_saved(self, path: Path) -> None: ...
    def reindex(self) -> None: ...
    def stats(self) -> dict[str, Any]:
        return {}

    def shutdown(self) -> None: ...


def cursor(prefix: str, suffix: str = "") -> Cursor:
    return Cursor("file:///w/f.py", 1, prefix, suffix, None, "python")


def completer(backend: ScriptedBackend, predict: bool = False) -> Completer:
    settings = Settings(debounce_ms=0, predict_next=predict)
    return Completer(backend, lambda: settings)


def test_a_block_is_answered_with_its_first_line_and_generated_on() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(BLOCK)
        pipeline = completer(backend)
        offer = await pipeline.complete(cursor(PREFIX), lambda: True)
        assert offer is not None and offer.text == "total = a + 1"
        assert pipeline._running  # answered while the block is still being generated
        assert pipeline.early_answers == 1
        # typing into the early answer is answered from it, no second generation
        typed = await pipeline.complete(cursor(PREFIX + "total = a"), lambda: True)
        assert typed is not None and typed.text == " + 1"
        while pipeline._running:
            await asyncio.sleep(0.01)
        assert backend.cancelled == [False]  # nobody waited any more, yet it went on
        # the whole block replaced the first line: after accepting it, the rest is on offer
        rest = await pipeline.complete(cursor(PREFIX + "total = a + 1"), lambda: True)
        assert rest is not None and rest.text == "\n    total *= 2\n    return total"
        assert len(backend.requests) == 1

    asyncio.run(scenario())


def test_typing_past_the_first_line_waits_for_the_whole_block() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(BLOCK, delay=0.1)
        pipeline = completer(backend)
        first = asyncio.ensure_future(pipeline.complete(cursor(PREFIX), lambda: True))
        await asyncio.sleep(0.15)  # generating, the first line not yet decided
        further = PREFIX + "total = a + 1\n    total"
        offer = await pipeline.complete(cursor(further), lambda: True)
        assert offer is not None and offer.text == " *= 2\n    return total"
        with pytest.raises(asyncio.CancelledError):
            await first  # superseded by the newer request, as an editor's would be
        assert len(backend.requests) == 1

    asyncio.run(scenario())


def test_typing_against_the_first_line_does_not_wait_for_the_block() -> None:
    """A key that disagrees with the early first line: the rest of that block cannot answer
    it, so the request starts its own generation at once instead of waiting for the block."""

    async def scenario() -> None:
        backend = ScriptedBackend(BLOCK, delay=0.1)
        pipeline = completer(backend)
        offer = await pipeline.complete(cursor(PREFIX), lambda: True)
        assert offer is not None and offer.text == "total = a + 1"
        assert pipeline._running  # the rest of the block is being generated
        typed = await pipeline.complete(cursor(PREFIX + "x"), lambda: True)
        assert typed is not None and len(backend.requests) == 2
        assert backend.cancelled[0]  # the block was stopped, not waited for to its end

    asyncio.run(scenario())


def test_single_lines_are_not_answered_early() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend("a + 1\nprint(x)\n")
        pipeline = completer(backend)
        offer = await pipeline.complete(cursor("x = f(", ", b)"), lambda: True)  # mid-line
        assert offer is not None and offer.text == "a + 1"
        assert pipeline.early_answers == 0

    asyncio.run(scenario())


def test_warm_up_is_asked_only_where_nothing_answers_yet() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend("a + 1\n")
        pipeline = completer(backend)
        assert pipeline.warm(cursor("x = "))
        assert backend.warmed[0].prefix == "x = " and backend.warmed[0].document
        await pipeline.complete(cursor("x = "), lambda: True)
        assert not pipeline.warm(cursor("x = "))  # an offer is waiting here
        assert not pipeline.warm(cursor("x = a"))  # typed into it: still on offer
        assert pipeline.warm(cursor("y = "))
        assert len(backend.warmed) == 2

    asyncio.run(scenario())


def test_the_completion_after_an_offer_is_ready_when_the_offer_is_taken() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend("x = a + 1\n", delay=0.01)
        pipeline = completer(backend, predict=True)
        offer = await pipeline.complete(cursor("def f(a):\n    "), lambda: True)
        assert offer is not None and offer.text == "x = a + 1"
        assert pipeline.predictions == 0  # not while the user may still be typing
        await pipeline.settled()  # quiet for a moment: the prediction runs
        assert pipeline.predictions == 1
        assert backend.requests[1].prefix == "def f(a):\n    x = a + 1"
        taken = await pipeline.complete(cursor("def f(a):\n    x = a + 1"), lambda: True)
        assert taken is not None and taken.text  # answered without a new generation
        assert len(backend.requests) == 2 and pipeline.predictions == 1  # one step ahead only

        # typing on at once: no prediction; a request elsewhere cancels one still running
        await pipeline.complete(cursor("def g(b):\n    "), lambda: True)
        await pipeline.complete(cursor("def g(b):\n    x"), lambda: True)  # typed ahead
        await asyncio.sleep(0.1)
        await pipeline.complete(cursor("def g(b):\n    x ="), lambda: True)
        assert pipeline.predictions == 1
        backend.delay = 0.2
        await asyncio.sleep(PREDICT_AFTER_S + 0.05)
        assert pipeline.predictions == 2 and pipeline._running
        other = Cursor("file:///w/other.py", 1, "def h(c):\n    ", "", None, "python")
        await pipeline.complete(other, lambda: True)
        assert backend.cancelled.count(True) == 1  # the prediction after g's offer

    asyncio.run(scenario())


def test_a_place_with_nothing_to_offer_is_not_asked_again() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend("\n\n\n", delay=0.01)
        pipeline = completer(backend)
        assert await pipeline.complete(cursor("x = 1", "\ny = 2"), lambda: True) is None
        assert await pipeline.complete(cursor("x = 1", "\ny = 2"), lambda: True) is None
        assert len(backend.requests) == 1
        assert await pipeline.complete(cursor("x = 12", "\ny = 2"), lambda: True) is None
        assert len(backend.requests) == 2  # another place: the model is asked

    asyncio.run(scenario())


def test_no_prediction_for_a_file_the_user_has_left() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend("x = a + 1\n", delay=0.01)
        pipeline = completer(backend, predict=True)
        await pipeline.complete(cursor("def f(a):\n    "), lambda: True)
        other = Cursor("file:///w/other.py", 1, "def h(c):\n    ", "", None, "python")
        assert pipeline.warm(other)  # the cursor now rests in another file
        await pipeline.settled()
        assert pipeline.predictions == 0 and len(backend.requests) == 1

    asyncio.run(scenario())


def test_a_cursor_resting_elsewhere_in_the_file_stops_a_prediction_and_warms() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend("x = a + 1\n", delay=0.3)
        pipeline = completer(backend, predict=True)
        await pipeline.complete(cursor("def f(a):\n    "), lambda: True)
        await asyncio.sleep(PREDICT_AFTER_S + 0.1)
        assert pipeline.predictions == 1 and pipeline._running  # generating at the offer's end
        assert pipeline.warm(cursor("def f(a"))  # the cursor went back up the file
        await pipeline.settled()
        assert backend.cancelled[-1] is True and len(backend.warmed) == 1

    asyncio.run(scenario())
