"""The language server's backend: the model, the stores and the workspace indexer.

One worker thread owns the model: loading it and every generation run there in order, so the
server's event loop and pygls' reader never wait on torch. Each document's last KV rows are
kept (`PrefixCaches`): the next request, usually the same file with a few more characters,
prefills only what changed; and where the client says where the cursor is before asking
(`warm`), the prompt is prefilled while the user still reads, so even the first request in a
file prefills little. Prompts are fill-in-the-middle when the tokenizer has the markers
(Qwen2.5-Coder does), cut at stable line boundaries so that typing keeps the prompt's start,
and with it the reusable prefix, in place.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from daemon.assembly import ShardSink, open_engine, open_project
from daemon.engine.decode import PrefixCache
from daemon.engine.engine import FIM_MARKERS, Engine
from daemon.engine.plan import PLANS, DecodePlan
from daemon.engine.prefix_caches import PrefixCaches
from daemon.engine.project_index import WorkspaceIndex
from daemon.engine.stops import Stop
from daemon.neighbours import Chunk, ChunkRing
from indexer.filters import IndexRules
from indexer.workspace import WorkspaceIndexer
from lsp.backend import CompletionRequest, Generated, StatusSink
from lsp.settings import Settings

__all__ = ["RequestPrompt", "Service", "is_cold", "request_prompt"]

logger = logging.getLogger(__name__)

_FIM = FIM_MARKERS
_FIM_ENDS = ("<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", *_FIM)
# Characters per token: code averages nearer 4 with this tokenizer, so a character budget of
# 3 per token stays under the token budget, and the token-level cut (which would shift the
# whole prompt on every key and defeat KV reuse) is only a fallback.
_CHARS_PER_TOKEN = 3
# the word the cursor is in or just after; ASCII only: a character the tokenizer splits into
# bytes has no token of its own to agree with, and the lead could never be written
_WORD_END = re.compile(r"[A-Za-z0-9_]+\Z")
# a longer run (a hash, minified code) stays in the prompt: its lead-in would take a one-row
# step per token
_MAX_LEAD_CHARS = 40


class Service:
    """Implements lsp.backend.Backend."""

    def __init__(self, backend: str = "auto") -> None:
        self.backend = backend  # what runs the model (engine/backends.py); not a client setting
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codeswift-model")
        self._lock = threading.Lock()
        self._status: StatusSink = lambda state, details: None
        self.settings = Settings()
        self.engine: Engine | None = None
        self.error: str | None = None
        self.reuse = PrefixCaches()  # touched on the model's thread only
        self._warm_cancel = threading.Event()  # of the latest warm-up; every request sets it
        self._warmed: set[str] = set()  # documents whose rows a warm-up wrote last
        self.projects = WorkspaceIndex()
        self.indexer: WorkspaceIndexer | None = None
        self._folders: set[Path] = set()
        self._buffers: dict[Path, str] = {}  # open documents, replayed when the indexer starts
        self.neighbours = ChunkRing()  # what was edited lately, for other files' prompts
        # folder -> (files done, files to do), written on the indexer's thread, read on the
        # model's and the server's: under `_lock`
        self._indexing: dict[Path, tuple[int, int]] = {}
        self._last_progress = 0.0
        self.requests = 0
        self.reused_tokens = 0
        self.prompt_tokens = 0
        self.warmed_rows = 0
        self.warm_hits = 0  # requests that reused rows a warm-up had prefilled
        self.short_answers = 0  # requests of cold documents answered from a short prompt

    # -- life cycle -------------------------------------------------------------------------

    def start(self, settings: Settings, status: StatusSink) -> None:
        self.settings, self._status = settings, status
        self._worker.submit(self._load)

    def configure(self, settings: Settings) -> None:
        reload = (settings.model, settings.device, settings.dtype) != (
            self.settings.model,
            self.settings.device,
            self.settings.dtype,
        )
        self.settings = settings
        if reload and (self.engine is not None or self.error is not None):
            self._worker.submit(self._load)

    def plan_for(self, settings: Settings) -> DecodePlan:
        """How this service drafts (the benchmark replays sessions with other plans)."""
        return plan_of(settings)

    def drain(self) -> None:
        """Wait until the model's thread has done what is queued so far, warm-ups included."""
        self._worker.submit(lambda: None).result()

    def shutdown(self) -> None:
        if self.indexer is not None:
            self.indexer.stop()
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _load(self) -> None:
        settings = self.settings
        self._status("loading", {"message": f"loading {settings.model}", "model": settings.model})
        self.engine, self.error = None, None
        self.reuse.clear()
        try:
            engine = open_engine(
                settings.model,
                settings.device,
                settings.dtype,
                backend=self.backend,
                project=self.projects,
            )
            # one-off costs (vocabulary scan, cost curve, first kernels) here, not in a request
            warm = engine.lm.tokenizer("def main():\n    ", add_special_tokens=False)["input_ids"]
            engine.complete(warm, self.plan_for(settings), Stop(4), lead="pass")  # + a lead-in
        except Exception as exc:  # the server stays up and answers with empty results
            self.error = f"cannot load model {settings.model}: {exc}"
            logger.error("%s", self.error)
            self._status("error", {"message": self.error, "model": settings.model})
            return
        self.engine = engine
        self._start_indexer(engine)
        self._status("ready", self._identity())

    def _identity(self) -> dict[str, Any]:
        if self.engine is None:
            return {"model": self.settings.model}
        lm = self.engine.lm
        return {"model": lm.name, "device": str(lm.device), "dtype": lm.dtype_name}

    # -- workspace --------------------------------------------------------------------------

    def _start_indexer(self, engine: Engine) -> None:
        if self.indexer is not None:
            return
        tokenizer = engine.lm.tokenizer
        rules = IndexRules(
            include=self.settings.index_include,
            exclude=self.settings.index_exclude,
            index_secrets=self.settings.index_secrets,
        )

        def sink_for(root: Path) -> ShardSink:
            index = open_project(root, tokenizer)
            self.projects.add(root, index)
            return ShardSink(index.shards)

        self.indexer = WorkspaceIndexer(sink_for, rules, on_progress=self._indexing_progress)
        self.indexer.on_batch = self._indexed
        self.indexer.start()
        with self._lock:
            folders = sorted(self._folders)
            buffers = dict(self._buffers)
        for folder in folders:
            self.indexer.add_folder(folder)
        for path, text in buffers.items():
            self.indexer.open_buffer(path, text)

    def _indexing_progress(self, root: Path, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._indexing[root] = (done, total)
            if done < total and now - self._last_progress < 0.25:
                return
            self._last_progress = now
            done_all, total_all = self._indexing_totals()
        message = f"indexing {done_all} of {total_all} files"
        self._status("indexing", {"message": message, "done": done_all, "total": total_all})

    def _indexed(self, root: Path, report: Any) -> None:
        with self._lock:
            finished = self._indexing.pop(root, None) is not None
        if finished:
            self._settle()

    def _indexing_totals(self) -> tuple[int, int]:
        """Files done and to do over every folder being indexed; call with `_lock` held."""
        return (
            sum(done for done, _ in self._indexing.values()),
            sum(total for _, total in self._indexing.values()),
        )

    def _settle(self) -> None:
        """Back from busy: still indexing, or ready."""
        with self._lock:
            indexing = bool(self._indexing)
            done, total = self._indexing_totals()
        if indexing:
            message = f"indexing {done} of {total} files"
            self._status("indexing", {"message": message, "done": done, "total": total})
        elif self.engine is not None:
            self._status("ready", self._identity())

    def add_folder(self, folder: Path) -> None:
        with self._lock:
            self._folders.add(folder)
        if self.indexer is not None:
            self.indexer.add_folder(folder)

    def remove_folder(self, folder: Path) -> None:
        with self._lock:
            self._folders.discard(folder)
        if self.indexer is not None:
            self.indexer.remove_folder(folder)
        self.projects.remove(folder)

    def buffer_changed(self, path: Path, text: str) -> None:
        with self._lock:
            before = self._buffers.get(path)
            self._buffers[path] = text
        if self.settings.context_tokens:  # off by default: no work on the keystroke path
            self.neighbours.edited(path, before, text)
        if self.indexer is not None:
            self.indexer.change_buffer(path, text)

    def buffer_closed(self, path: Path) -> None:
        with self._lock:
            self._buffers.pop(path, None)
        if self.indexer is not None:
            self.indexer.close_buffer(path)

    def file_saved(self, path: Path) -> None:
        if self.indexer is not None:
            self.indexer.reindex(path)

    def reindex(self) -> None:
        if self.indexer is not None:
            self.indexer.reindex()

    def stats(self) -> dict[str, Any]:
        return {
            **self._identity(),
            "pid": os.getpid(),  # whose memory and threads a long-running client can watch
            "error": self.error,
            "requests": self.requests,
            "promptTokens": self.prompt_tokens,
            "reusedPromptTokens": self.reused_tokens,
            "warmedRows": self.warmed_rows,
            "warmHits": self.warm_hits,
            "shortAnswers": self.short_answers,
            "keptRows": self.reuse.rows,
            "index": self.indexer.stats() if self.indexer is not None else None,
        }

    # -- generation -------------------------------------------------------------------------

    def complete(self, request: CompletionRequest, cancel: threading.Event) -> Future[Generated]:
        self._warm_cancel.set()  # a real request goes first: warming stops within a chunk
        return self._worker.submit(self._generate, request, cancel, time.perf_counter())

    def warm(self, request: CompletionRequest) -> None:
        self._warm_later(request, None)

    def _warm_later(self, request: CompletionRequest, prompt: list[int] | None) -> None:
        """Queue a warm-up of `request`'s prompt (`prompt` when already built)."""
        self._warm_cancel.set()  # only the latest cursor is worth warming
        cancel = self._warm_cancel = threading.Event()
        self._worker.submit(self._warm, request, prompt, cancel)

    def _warm(
        self, request: CompletionRequest, prompt: list[int] | None, cancel: threading.Event
    ) -> None:
        engine = self.engine
        if engine is None or cancel.is_set():
            return
        try:
            if prompt is None:
                prompt = request_prompt(engine, request, self.neighbours_for(request)).ids
            document = _document_key(request)
            rows = engine.warm(prompt, self.reuse.get(document), cancel.is_set)
        except Exception:  # a warm-up is a nicety: never let it take the worker down
            logger.exception("warming failed")
            return
        self.reuse.trim()
        if rows:
            self.warmed_rows += rows
            self._warmed.add(document)

    def _generate(
        self, request: CompletionRequest, cancel: threading.Event, queued: float
    ) -> Generated:
        engine = self.engine
        if engine is None or cancel.is_set():
            reason = "unavailable" if engine is None else "cancelled"
            return Generated("", 0, 0, 0.0, 0, reason)
        started = time.perf_counter()
        settings = request.settings
        document = _document_key(request)
        asked = request_prompt(engine, request, self.neighbours_for(request))
        full, reuse = asked, self.reuse.get(document)
        short = self._short_prompt(engine, request, asked, reuse)
        if short is not None:  # cold: answer from the short prompt, warm the full one after
            asked, reuse = short, self.reuse.get(document + _SHORT)
        prompt, typed = asked.ids, asked.typed
        # the time cap runs from here, not from the request: a request queued behind the model
        # load must not arrive already expired; at the cap, whatever was made is shown
        deadline = time.monotonic() + settings.timeout_ms / 1000
        timed_out = False

        def should_stop() -> bool:
            nonlocal timed_out
            timed_out = timed_out or time.monotonic() > deadline
            return cancel.is_set() or timed_out

        self._status("busy", {})
        stop = Stop(
            settings.max_new_tokens,
            end_ids=frozenset(asked.end_ids),
            shape_decided=lambda raw: request.stop(typed(raw)),
        )
        plan = self.plan_for(settings)
        try:
            completion = engine.complete(prompt, plan, stop, should_stop, reuse, asked.lead)
        finally:
            self._settle()
        self.reuse.trim()
        if short is None:
            self.reuse.drop(document + _SHORT)  # the full prompt's rows are what reuse needs
        else:
            self.short_answers += 1
            if not cancel.is_set():
                self._warm_later(request, full.ids)
        self.requests += 1
        self.prompt_tokens += len(prompt)
        self.reused_tokens += reuse.reused
        if document in self._warmed:
            self._warmed.discard(document)
            self.warm_hits += reuse.reused > 0
        decoded = completion.decoded
        return Generated(
            text=typed(completion.text),
            tokens=len(decoded.tokens),
            forwards=decoded.forwards,
            seconds=time.perf_counter() - started,
            reused_tokens=reuse.reused,
            stop_reason="timeout" if timed_out and not cancel.is_set() else decoded.stop_reason,
            waited_s=started - queued,
            prefill_s=decoded.prefill_s,
            prefilled=len(prompt) - reuse.reused,
            short_prompt=short is not None,
        )

    def _short_prompt(
        self, engine: Engine, request: CompletionRequest, asked: RequestPrompt, reuse: PrefixCache
    ) -> RequestPrompt | None:
        """The prompt with `coldPrefixTokens` of prefix, while `asked` is cold (`is_cold`):
        that request waits for a fraction of the prefill, not all of it. None: use `asked`."""
        settings = request.settings
        quick = settings.cold_prefix_tokens
        if quick == 0 or quick >= settings.prefix_tokens:
            return None
        if not is_cold(reuse, asked.ids, quick + settings.suffix_tokens):
            return None
        shorter = replace(request, settings=replace(settings, prefix_tokens=quick))
        short = request_prompt(engine, shorter, self.neighbours_for(request))
        return short if len(short.ids) < len(asked.ids) else None

    def neighbours_for(self, request: CompletionRequest) -> list[Chunk]:
        """The chunks of other files that `request`'s prompt carries (none by default)."""
        if request.settings.context_tokens == 0:
            return []
        return self.neighbours.chunks(leave_out=request.path)


def _document_key(request: CompletionRequest) -> str:
    return request.document or str(request.path)


def is_cold(reuse: PrefixCache, prompt: Sequence[int], short_rows: int) -> bool:
    """Whether `prompt` would prefill more than `short_rows` rows and every row `reuse` keeps
    is a start of it: nothing kept (a document's first request), or its warm-up still part
    way (the keys typed right after). A document whose rows belong to another prompt (one
    request ago, or the window moved since) keeps its full context: an A/B on `edit:click`
    lost 3 of 13 right first lines when every window move went short."""
    shared = reuse.shared(prompt)
    kept = len(reuse.tokens) if reuse.cache is not None else 0
    return shared == kept and len(prompt) - shared > short_rows


# the key of a document's short-prompt rows, kept beside its full prompt's: until the full
# prompt is warm, the next keys reuse these
_SHORT = "#short-prompt"


def plan_of(settings: Settings) -> DecodePlan:
    """The plan the `method` setting names (settings.py checked the name against PLANS)."""
    return PLANS[settings.method]


@dataclass(frozen=True)
class RequestPrompt:
    ids: list[int]
    end_ids: list[int]  # extra tokens that end a completion
    typed: Callable[[str], str]  # the model's raw text -> the completion's text
    lead: str  # what the raw text must start with (Engine.complete's `lead`)


def request_prompt(
    engine: Engine, request: CompletionRequest, neighbours: Sequence[Chunk] = ()
) -> RequestPrompt:
    """What the model is given for `request`, with code from `neighbours` (other files) as
    far as the `contextTokens` budget goes."""
    # A word being typed stays out of the prompt: cut inside a word, the prompt would end on a
    # token boundary the model never saw there and it would take the word as finished. The
    # model writes the word itself, held to what was typed (a lead: engine/lead.py).
    # Blanks before the cursor stay out too: alone they tokenize unlike the indentation-plus-
    # word tokens the model writes, and it would indent twice. Both are taken off the front of
    # what the model writes.
    word = _WORD_END.search(request.prefix)
    partial = word.group() if word and len(word.group()) <= _MAX_LEAD_CHARS else ""
    before = request.prefix[: len(request.prefix) - len(partial)]
    blanks = before[len(before.rstrip(" \t")) :]
    prefix = before[: len(before) - len(blanks)]
    lead = blanks + partial if partial else ""

    def typed(raw: str) -> str:
        if lead:
            return raw[len(lead) :] if raw.startswith(lead) else ""
        if raw.startswith(blanks):
            return raw[len(blanks) :]
        return raw.lstrip(" \t")

    prompt, end_ids = fim_prompt(engine, prefix, request.suffix, request.settings)
    if neighbours and prompt[0] == _marker_ids(engine.lm.tokenizer).get(_FIM[0]):
        prompt = _with_neighbours(engine, request, neighbours) + prompt
    return RequestPrompt(prompt, end_ids, typed, lead)


def _with_neighbours(
    engine: Engine, request: CompletionRequest, neighbours: Sequence[Chunk]
) -> list[int]:
    """Qwen2.5-Coder's repository layout before the fill-in-the-middle prompt: each chunk as
    `<|file_sep|>path` and its lines, newest kept first within the budget, then the file
    being completed; oldest first in the prompt, so a new chunk changes only its end."""
    tokenizer = engine.lm.tokenizer
    separator = _marker_ids(tokenizer)["<|file_sep|>"]
    budget = request.settings.context_tokens
    kept: list[list[int]] = []
    for chunk in reversed(neighbours):
        ids = [separator, *_ids(tokenizer, f"{_shown_path(chunk.path)}\n{chunk.text}")]
        if len(ids) > budget:
            break
        budget -= len(ids)
        kept.append(ids)
    if not kept:
        return []
    current = tokenizer(f"{_shown_path(request.path)}\n", add_special_tokens=False)["input_ids"]
    return [token for ids in reversed(kept) for token in ids] + [separator, *current]


@functools.lru_cache(maxsize=64)
def _ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    """Token ids of a chunk (cached: the same chunks go into every request's prompt)."""
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def _shown_path(path: Path | None) -> str:
    return path.name if path is not None else "untitled"


def fim_prompt(
    engine: Engine, prefix: str, suffix: str, settings: Settings
) -> tuple[list[int], list[int]]:
    """Prompt ids (prefix-suffix-middle when the tokenizer has the markers) and the extra ids
    that end a completion.

    The line being typed goes after the middle marker, as if the model had written it (the
    layout llama.vim asks llama.cpp's infill for): the prefix ends at the line's start and the
    suffix follows it, so a key changes only the prompt's last few tokens and the suffix's KV
    rows stay reusable. With the line in the prefix, every key re-ran the whole suffix."""
    tokenizer = engine.lm.tokenizer
    markers = _marker_ids(tokenizer)
    if not all(marker in markers for marker in _FIM):
        head = _stable_tail(prefix, settings.prefix_tokens * _CHARS_PER_TOKEN)
        ids = tokenizer(head, add_special_tokens=False)["input_ids"][-settings.prefix_tokens :]
        return ids or [*tokenizer("\n")["input_ids"]], []
    line_start = prefix.rfind("\n") + 1
    head = _stable_tail(prefix[:line_start], settings.prefix_tokens * _CHARS_PER_TOKEN)
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"][-settings.prefix_tokens :]
    line = prefix[line_start:][-settings.prefix_tokens * _CHARS_PER_TOKEN :]  # minified code
    line_ids = tokenizer(line, add_special_tokens=False)["input_ids"][-settings.prefix_tokens :]
    tail = suffix[: settings.suffix_tokens * _CHARS_PER_TOKEN]
    suffix_ids = tokenizer(tail, add_special_tokens=False)["input_ids"][: settings.suffix_tokens]
    begin, hole, middle = (markers[marker] for marker in _FIM)
    return [begin, *head_ids, hole, *suffix_ids, middle, *line_ids], list(markers.values())


@functools.lru_cache(maxsize=4)
def _marker_ids(tokenizer: Any) -> dict[str, int]:
    """The fill-in-the-middle markers this tokenizer has. Cached: building the whole vocabulary
    costs about 100 ms, far too much for every keystroke."""
    vocab = tokenizer.get_vocab()
    return {marker: vocab[marker] for marker in _FIM_ENDS if marker in vocab}


def _stable_tail(text: str, budget: int) -> str:
    """The end of `text`, about `budget` characters, starting at a line start that stays put
    while the user types (so the next prompt shares this one's token prefix)."""
    if len(text) <= budget:
        return text
    step = max(256, budget // 3)  # the start moves in steps of this many characters
    start = ((len(text) - budget) // step + 1) * step
    newline = text.find("\n", start)
    return text[newline + 1 :] if newline != -1 else text[start:]
