"""One completion, from a cursor to shaped text: offers reused, debounce, generation shared or
cancelled, stale answers refused.

Rules for the requests of one document:
  * the same place asked again, or the user typing into the text on offer: answered from the
    offers, no model call;
  * a newer request supersedes an older one still waiting out its debounce (the older answers
    RequestCancelled, -32800);
  * a generation still running for a prefix the new request extends is awaited and shared, not
    restarted; any other running generation is cancelled;
  * an answer for a document that changed meanwhile is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp.backend import Backend, CompletionRequest, Generated
from lsp.settings import Settings
from lsp.shaping import CursorContext, cut_point, shape_completion, wants_multiline
from lsp.typeahead import Offer, OfferCache

__all__ = ["Completer", "Cursor"]

logger = logging.getLogger(__name__)

_HISTORY = 500
# a document asked nothing for this long after an offer: the user reads it, so predict
PREDICT_AFTER_S = 0.25


@dataclass(frozen=True)
class Cursor:
    uri: str
    version: int | None
    prefix: str
    suffix: str
    path: Path | None
    language: str
    tab_size: int = 4
    insert_spaces: bool = True
    invoked: bool = False  # an explicit gesture, not typing


@dataclass
class _Generation:
    """A generation in flight, awaited by one or more requests."""

    prefix: str
    suffix: str
    settings_key: object
    future: asyncio.Future[Generated]
    cancel: threading.Event = field(default_factory=threading.Event)
    # the block's first line as soon as it is decided, then the whole completion once the
    # generation ends (set before waiters resume)
    offer: Offer | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: int = 0

    async def wait(self, whole: bool = False) -> Offer | None:
        """The offer once there is one (`whole`: once the generation has ended)."""
        self.waiters += 1
        answered: asyncio.Future[Any] = asyncio.ensure_future(self.answered.wait())
        try:
            if whole:
                await asyncio.shield(self.future)
            else:
                either: list[asyncio.Future[Any]] = [answered, self.future]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            return self.offer
        finally:
            answered.cancel()
            self.waiters -= 1
            if self.waiters == 0 and self.offer is None and not self.future.done():
                self.cancel.set()  # nobody wants it any more: stop within one decode step


class Completer:
    """The completion pipeline of one server (runs on its event loop)."""

    def __init__(self, backend: Backend, settings: Callable[[], Settings]) -> None:
        self.backend = backend
        self.settings = settings
        self.offers = OfferCache()
        self._running: dict[str, _Generation] = {}
        self._latest: dict[str, int] = {}
        self._sequence = 0
        # recent history only: a server runs for days
        self.latencies_ms: deque[float] = deque(maxlen=_HISTORY)
        self.generated: deque[Generated] = deque(maxlen=_HISTORY)
        self.last_generated_in = ""  # the document of the latest of them
        self.offered = 0
        self.accepted = 0
        self.warmups = 0
        self.early_answers = 0  # blocks answered with their first line while generating
        self.predictions = 0  # generations started for the place after an offer
        self._touched: dict[str, float] = {}  # document -> when it was last asked about
        self._focus = ""  # the document last asked about or rested in: where the user is
        self._pending: set[asyncio.TimerHandle] = set()  # predictions waiting for quiet

    async def complete(self, cursor: Cursor, is_current: Callable[[], bool]) -> Offer | None:
        """The offer for `cursor`, or None; raises CancelledError when superseded."""
        started = time.perf_counter()
        self._touched[cursor.uri] = time.monotonic()
        self._focus = cursor.uri
        settings = self.settings()
        context = CursorContext(
            cursor.prefix, cursor.suffix, cursor.tab_size, cursor.insert_spaces, cursor.language
        )
        multiline = wants_multiline(context, settings.multiline)
        # what shaped an offer; the single/multi-line decision is left out on purpose: typing
        # into a block offer makes the line non-blank, and the rest of the block still holds
        key = (settings, cursor.tab_size, cursor.insert_spaces)
        offer = self.offers.lookup(cursor.uri, cursor.prefix, cursor.suffix, key)
        if offer is not None:
            if offer.text and settings.predict_next:  # typed into: its end is still ahead
                self._predict_when_quiet(cursor, offer.text, key, settings)
            return self._offered(offer, started, "typed ahead")

        self._sequence += 1
        sequence = self._latest[cursor.uri] = self._sequence
        if settings.debounce_ms and not cursor.invoked:
            await asyncio.sleep(settings.debounce_ms / 1000)
        if self._latest.get(cursor.uri) != sequence:
            raise asyncio.CancelledError  # a newer request for this document arrived

        running = self._running.get(cursor.uri)
        if running is not None and _extends(running, cursor, key):
            for whole in (False, True):  # its first line may not reach this far: then all
                if _diverged(running, cursor):
                    break
                await running.wait(whole)
                if self._latest.get(cursor.uri) != sequence:
                    raise asyncio.CancelledError  # superseded while waiting: never queue behind
                offer = self.offers.lookup(cursor.uri, cursor.prefix, cursor.suffix, key)
                if offer is not None:
                    return self._offered(offer, started, "a running generation")
        if running is not None and not running.future.done():
            running.cancel.set()  # for another place, or it cannot write what was typed
        self._cancel_unawaited(cursor.uri)

        generation = self._start(cursor, context, multiline, key, settings)
        offer = await generation.wait()
        if self._latest.get(cursor.uri) != sequence:
            raise asyncio.CancelledError  # superseded while generating
        if not is_current():
            return None  # the document changed while generating: never answer for old text
        return self._offered(offer, started, "the model") if offer is not None else None

    def _start(
        self,
        cursor: Cursor,
        context: CursorContext,
        multiline: bool,
        key: object,
        settings: Settings,
        predicted: bool = False,
    ) -> _Generation:
        loop = asyncio.get_running_loop()
        decided: list[str] = []  # the first line, once: written on the backend's thread

        def early(text: str) -> None:
            """A block's first line is decided: answer with it, keep generating the rest."""
            if multiline and not decided and (end := _first_line_end(text)) is not None:
                decided.append(text[:end])
                # runs on the loop once `_start` has returned, so `generation` is set by then
                loop.call_soon_threadsafe(
                    lambda: self._answer_early(generation, decided[0], context, cursor.uri)
                )

        request = _request(cursor, context, multiline, settings, early)
        cancel = threading.Event()
        future = asyncio.wrap_future(self.backend.complete(request, cancel), loop=loop)
        generation = _Generation(cursor.prefix, cursor.suffix, key, future, cancel)
        self._running[cursor.uri] = generation

        def finished(_: asyncio.Future[Generated]) -> None:
            if self._running.get(cursor.uri) is generation:
                del self._running[cursor.uri]
            if future.cancelled() or future.exception() is not None:
                if not future.cancelled():
                    logger.error("generation failed: %s", future.exception())
                return
            generated = future.result()
            self.generated.append(generated)
            self.last_generated_in = cursor.uri
            logger.debug("generation: %s", _account(generated))
            if generated.stop_reason == "cancelled":
                return  # cut short for a newer request: not an answer to remember
            raw = generated.text
            if generated.stop_reason == "timeout":  # cut off mid-line: keep whole lines only
                raw = raw[: raw.rfind("\n")] if "\n" in raw else ""
            text = shape_completion(raw, context, multiline)
            if not text and generated.stop_reason != "timeout":
                # nothing to offer here: remembered too, since asking again would get nothing
                nothing = Offer(self.offers.new_id(), cursor.prefix, cursor.suffix, "", key)
                self.offers.remember(cursor.uri, nothing)
            if text:  # remembered here, so requests sharing this generation find it at once
                generation.offer = Offer(
                    self.offers.new_id(), cursor.prefix, cursor.suffix, text, key
                )
                self.offers.remember(cursor.uri, generation.offer)
                generation.answered.set()
                if not predicted and settings.predict_next:
                    self._predict_when_quiet(cursor, text, key, settings)

        future.add_done_callback(finished)
        return generation

    def _predict_when_quiet(
        self, cursor: Cursor, offered: str, key: object, settings: Settings
    ) -> None:
        """The user may take what is on offer; the next request would come at its end.
        Generate that one (llama.vim's speculative FIM) once the document has been quiet for
        PREDICT_AFTER_S, while the user reads the offer: not while they type on, where it
        would only hold up the model for the next key's request."""
        loop = asyncio.get_running_loop()
        handle: list[asyncio.TimerHandle] = []
        handle.append(
            loop.call_later(
                PREDICT_AFTER_S, lambda: self._predict(cursor, offered, key, settings, handle[0])
            )
        )
        self._pending.add(handle[0])

    def _predict(
        self,
        cursor: Cursor,
        offered: str,
        key: object,
        settings: Settings,
        timer: asyncio.TimerHandle,
    ) -> None:
        """One step ahead only; a request for another place of the document or for another
        document cancels it, and one at that place shares it."""
        self._pending.discard(timer)
        quiet = time.monotonic() - self._touched.get(cursor.uri, 0.0) >= PREDICT_AFTER_S
        if not quiet or cursor.uri in self._running or cursor.uri != self._focus:
            return  # typing on, generating already, or the user has moved to another file
        after = dataclasses.replace(cursor, prefix=cursor.prefix + offered, invoked=False)
        if self.offers.lookup(after.uri, after.prefix, after.suffix, key, count=False):
            return  # predicted already
        context = CursorContext(
            after.prefix, after.suffix, after.tab_size, after.insert_spaces, after.language
        )
        multiline = wants_multiline(context, settings.multiline)
        self._start(after, context, multiline, key, settings, predicted=True)
        self.predictions += 1

    def _answer_early(
        self, generation: _Generation, line: str, context: CursorContext, uri: str
    ) -> None:
        """Offer a block's decided first line while the rest is generated. The offer is
        remembered like any other, so typing into it is answered at once; the whole block
        replaces it (same place) when the generation ends."""
        if generation.offer is not None or generation.future.done():
            return
        text = shape_completion(line, context, multiline=True)
        if not text:
            return
        generation.offer = Offer(
            self.offers.new_id(),
            generation.prefix,
            generation.suffix,
            text,
            generation.settings_key,
        )
        self.offers.remember(uri, generation.offer)
        self.early_answers += 1
        generation.answered.set()

    def _cancel_unawaited(self, uri: str) -> None:
        """Generations of other documents that nobody waits for (the rest of a block already
        answered with its first line, a prediction): the user has moved on, and the model is
        wanted here."""
        for other, generation in self._running.items():
            if other != uri and generation.waiters == 0:
                generation.cancel.set()

    def warm(self, cursor: Cursor) -> bool:
        """The cursor rests at `cursor` and nothing is asked: have the backend prefill the
        prompt a request here would have. Not when a request waits for a generation of the
        document, one runs for this place, or an offer already answers it. True when a warm-up
        was queued."""
        settings = self.settings()
        self._focus = cursor.uri
        key = (settings, cursor.tab_size, cursor.insert_spaces)
        running = self._running.get(cursor.uri)
        if running is not None:
            if running.waiters or _extends(running, cursor, key):
                return False  # a request waits for it, or it is for this very place
            running.cancel.set()  # a prediction or a block's rest for a place the user left
        self._cancel_unawaited(cursor.uri)
        if self.offers.lookup(cursor.uri, cursor.prefix, cursor.suffix, key, count=False):
            return False
        context = CursorContext(
            cursor.prefix, cursor.suffix, cursor.tab_size, cursor.insert_spaces, cursor.language
        )
        multiline = wants_multiline(context, settings.multiline)
        self.backend.warm(_request(cursor, context, multiline, settings))
        self.warmups += 1
        return True

    def _offered(self, offer: Offer, started: float, source: str) -> Offer | None:
        if not offer.text:
            return None  # the model had nothing to say here, and would not now
        self.offered += 1
        elapsed = (time.perf_counter() - started) * 1000
        self.latencies_ms.append(elapsed)
        logger.debug("offer %s answered in %.0f ms from %s", offer.completion_id, elapsed, source)
        return offer

    async def settled(self) -> None:
        """Wait until no generation runs or waits to (the rest of a block answered early, a
        prediction)."""
        while self._pending or self._running:
            if not self._running:
                await asyncio.sleep(PREDICT_AFTER_S / 4)
                continue
            running = [asyncio.shield(g.future) for g in self._running.values()]
            await asyncio.gather(*running, return_exceptions=True)
            await asyncio.sleep(0)  # let their done-callbacks run (they may start a prediction)

    def forget(self, uri: str) -> None:
        self.offers.forget(uri)
        self._latest.pop(uri, None)
        self._touched.pop(uri, None)
        if self._focus == uri:
            self._focus = ""
        running = self._running.pop(uri, None)
        if running is not None:
            running.cancel.set()

    def cancel_all(self) -> None:
        for timer in self._pending:
            timer.cancel()
        self._pending.clear()
        for running in self._running.values():
            running.cancel.set()


def _request(
    cursor: Cursor,
    context: CursorContext,
    multiline: bool,
    settings: Settings,
    watch: Callable[[str], None] = lambda text: None,
) -> CompletionRequest:
    """The backend's request for `cursor`; `watch` sees the text so far at every check."""

    def stop(text: str) -> bool:
        watch(text)
        return cut_point(text, context, multiline) is not None

    return CompletionRequest(
        prefix=cursor.prefix,
        suffix=cursor.suffix,
        path=cursor.path,
        language=cursor.language,
        settings=settings,
        stop=stop,
        document=cursor.uri,
    )


def _first_line_end(text: str) -> int | None:
    """Where the first line with code in it ends, once a line break follows it."""
    start = len(text) - len(text.lstrip())  # the first character that is not blank
    line_break = text.find("\n", start) if start < len(text) else -1
    return None if line_break == -1 else line_break


def _diverged(running: _Generation, cursor: Cursor) -> bool:
    """What was typed since `running` started disagrees with the first line it answered with.
    Greedy decoding writes that line first, whatever comes after, so the rest of the block
    cannot hold this cursor's completion: waiting for it (hundreds of ms) would be waste."""
    if running.offer is None:
        return False
    typed, line = cursor.prefix[len(running.prefix) :], running.offer.text
    return len(typed) <= len(line) and not line.startswith(typed)


def _extends(running: _Generation, cursor: Cursor, key: object) -> bool:
    """The running generation started at a prefix this cursor's prefix extends (typing on)."""
    return (
        running.settings_key == key
        and running.suffix == cursor.suffix
        and cursor.prefix.startswith(running.prefix)
    )


def _account(generated: Generated) -> str:
    """Where a generation's time went, for the debug log (an editor's own requests, timed by
    the server)."""
    short = ", short prompt" if generated.short_prompt else ""
    return (
        f"{generated.seconds * 1000:.0f} ms: waited {generated.waited_s * 1000:.0f} ms, "
        f"prefill {generated.prefilled} rows {generated.prefill_s * 1000:.0f} ms{short}, "
        f"{generated.tokens} tokens in {generated.forwards} forwards, {generated.stop_reason}"
    )
