"""The workspace indexer: watchdog observers feeding debounced batches to one worker thread.

Everything that touches a sink runs on the worker, in order: initial scans, batches of changed
paths, open-buffer edits. Events arrive on watchdog's thread and only enter a queue. The worker
waits on that queue (no polling), so an idle workspace costs no CPU. A batch is flushed once
no event came for `debounce_s`, or `max_delay_s` after its first event under a steady stream
(a `git checkout` of thousands of files becomes a few batches, not thousands of re-indexes).

Edits to open buffers wait for a pause in typing (`buffer_quiet_s`, at most `buffer_max_delay_s`
after the first unindexed one), and only the latest text is indexed: the language server asks
the model for a completion after every key, and on a 2-core machine a re-index per key ran
beside every one of those generations.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from indexer.buffers import OpenBuffer
from indexer.filters import DEFAULT_IGNORED_DIRS, IndexRules
from indexer.jobs import (
    AddFolder,
    Buffer,
    CloseBuffer,
    Event,
    Job,
    Reindex,
    RemoveFolder,
    Stop,
)
from indexer.languages import language_of
from indexer.scan import FolderIndexer, FolderSink, ScanReport

__all__ = ["WorkspaceIndexer"]

logger = logging.getLogger(__name__)

SinkFactory = Callable[[Path], FolderSink]
ProgressCallback = Callable[[Path, int, int], None]  # folder, files done, files in all
BatchCallback = Callable[[Path, ScanReport], None]

# Opened / closed-without-writing events are left out: our own reads would feed back as events.
_WATCHED = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


@dataclass
class _Folder:
    indexer: FolderIndexer
    watch: ObservedWatch | None = None
    changed: set[Path] = field(default_factory=set)
    moves: dict[Path, Path] = field(default_factory=dict)
    report: ScanReport = field(default_factory=ScanReport)
    scanned: bool = False


class WorkspaceIndexer:
    """Keeps one sink per workspace folder current while the folders change on disk."""

    def __init__(
        self,
        sink_for: SinkFactory,
        rules: IndexRules | None = None,
        debounce_s: float = 0.15,
        max_delay_s: float = 1.0,
        on_progress: ProgressCallback | None = None,
        on_batch: BatchCallback | None = None,
        buffer_quiet_s: float = 0.5,
        buffer_max_delay_s: float = 3.0,
    ) -> None:
        self.sink_for = sink_for
        self.rules = rules or IndexRules()
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        self.buffer_quiet_s = buffer_quiet_s
        self.buffer_max_delay_s = buffer_max_delay_s
        self.on_progress = on_progress
        self.on_batch = on_batch
        self._folders: dict[Path, _Folder] = {}
        self._buffers: dict[Path, OpenBuffer] = {}
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._outstanding = 0  # jobs submitted and not yet done
        self._pending = False  # events noted and waiting for their batch (worker-owned)
        self._first_event = self._last_event = 0.0
        self._edits: dict[Path, str] = {}  # buffers' latest unindexed text (worker-owned)
        self._first_edit = self._last_edit = 0.0
        self._handler = EventHandler(self._submit)
        self.errors: Counter[str] = Counter()
        self.events = 0
        self.batches = 0
        self.last_batch_ms = 0.0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is not None:
            return
        self._stopping.clear()
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._worker = threading.Thread(target=self._run, name="codeswift-indexer", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop watching and join both threads within about `timeout` seconds in all (pending
        events are dropped, a scan in flight ends at its next file). Both threads are daemons:
        one that does not end in time is left behind, never waited for without bound."""
        if self._worker is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._jobs.put(Stop())
        self._worker.join(timeout / 2)
        if self._observer is not None:
            # watchdog joins its emitter threads without a timeout: stop it on a thread of
            # its own, and wait only as long as we may
            stopper = threading.Thread(target=self._observer.stop, name="codeswift-unwatch")
            stopper.daemon = True
            stopper.start()
            stopper.join(max(0.0, deadline - time.monotonic()))
        self._worker = self._observer = None

    def __enter__(self) -> WorkspaceIndexer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests (any thread) --------------------------------------------------------------

    def add_folder(self, root: Path) -> None:
        self._submit(AddFolder(root.resolve()))

    def remove_folder(self, root: Path) -> None:
        self._submit(RemoveFolder(root.resolve()))

    def reindex(self, path: Path | None = None) -> None:
        """Re-check one file or folder, or (None) rescan every folder."""
        self._submit(Reindex(path.resolve() if path else None))

    def open_buffer(self, path: Path, text: str) -> None:
        self._submit(Buffer(path.resolve(), text))

    def change_buffer(self, path: Path, text: str) -> None:
        self._submit(Buffer(path.resolve(), text, edit=True))

    def close_buffer(self, path: Path) -> None:
        self._submit(CloseBuffer(path.resolve()))

    def wait_idle(self, timeout: float) -> bool:
        """Block until every job and pending event is processed (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return self.idle()

    @property
    def folders(self) -> list[Path]:
        return sorted(self._folders)

    def stats(self) -> dict[str, Any]:
        return {
            "folders": {
                str(root): {
                    **folder.indexer.sink.summary(),
                    **folder.report.as_dict(),
                    "scanned": folder.scanned,  # the initial scan is done
                    "watched": folder.watch is not None,
                }
                for root, folder in list(self._folders.items())
            },
            "open_buffers": len(self._buffers),
            "events": self.events,
            "batches": self.batches,
            "last_batch_ms": round(self.last_batch_ms, 2),
            "errors": dict(self.errors),
        }

    def _submit(self, job: Job) -> None:
        with self._count_lock:
            self._outstanding += 1
        self._jobs.put(job)

    def idle(self) -> bool:
        """No job queued or running, and no event or buffer edit waiting for its turn."""
        with self._count_lock:
            outstanding = self._outstanding
        # read in this order: a job marks itself pending before it stops counting
        return outstanding == 0 and not self._pending and not self._edits

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            due = [t for t in (self._deadline(), self._edits_deadline()) if t is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                job = None
            if isinstance(job, Stop):
                return
            if job is not None:
                self._handle(job)
            # a steady stream of events (or a slow job) must not hold a due batch back
            now = time.monotonic()
            if (batch_due := self._deadline()) is not None and now >= batch_due:
                self._guarded("flush", self._flush)
            if (edits_due := self._edits_deadline()) is not None and now >= edits_due:
                edits, self._edits = self._edits, {}
                for path, text in edits.items():
                    self._guarded("buffer", self._buffer, path, text)
            if job is not None:
                with self._count_lock:
                    self._outstanding -= 1

    def _handle(self, job: Job) -> None:
        match job:
            case Event(kind, path, dest):
                now = time.monotonic()
                if not self._pending:
                    self._first_event = now
                self._last_event = now
                self._guarded("event", self._note, kind, path, dest)
            case AddFolder(root):
                self._guarded("add", self._add, root)
            case RemoveFolder(root):
                self._guarded("remove", self._remove, root)
            case Reindex(path):
                self._guarded("reindex", self._reindex, path)
            case Buffer(path, text, edit=True):
                now = time.monotonic()
                if not self._edits:
                    self._first_edit = now
                self._last_edit = now
                self._edits[path] = text
            case Buffer(path, text):
                self._edits.pop(path, None)
                self._guarded("buffer", self._buffer, path, text)
            case CloseBuffer(path):
                self._edits.pop(path, None)  # the file on disk is the truth again
                self._guarded("close", self._close, path)

    def _guarded(self, name: str, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except Exception:  # one bad job must never end the watcher
            logger.exception("indexer job %s failed", name)
            self.errors[name] += 1

    def _deadline(self) -> float | None:
        """When the batch of noted events is due (None: nothing noted)."""
        if not self._pending:
            return None
        return min(self._last_event + self.debounce_s, self._first_event + self.max_delay_s)

    def _edits_deadline(self) -> float | None:
        """When the buffers' waiting edits are due (None: none waits)."""
        if not self._edits:
            return None
        quiet = self._last_edit + self.buffer_quiet_s
        return min(quiet, self._first_edit + self.buffer_max_delay_s)

    def _note(self, kind: str, path: Path, dest: Path | None) -> None:
        self.events += 1
        for folder_root, folder in self._folders.items():
            ends = [end for end in (path, dest) if end is not None and _watched(folder_root, end)]
            if kind == "moved" and len(ends) == 2:
                folder.moves[path] = ends[1]
            folder.changed.update(ends)
            self._pending = self._pending or bool(ends)

    def _flush(self) -> None:
        self._pending = False
        for root, folder in list(self._folders.items()):
            if not (folder.changed or folder.moves):
                continue
            changed, moves = folder.changed, folder.moves
            folder.changed, folder.moves = set(), {}
            started = time.perf_counter()
            report = folder.indexer.refresh(changed, moves)
            self.batches += 1
            self.last_batch_ms = (time.perf_counter() - started) * 1000
            folder.report.merge(report)
            if self.on_batch is not None:
                self.on_batch(root, report)

    def _add(self, root: Path) -> None:
        if root in self._folders:
            return
        folder = _Folder(FolderIndexer(root, self.sink_for(root), self.rules))
        self._folders[root] = folder
        try:
            assert self._observer is not None
            folder.watch = self._observer.schedule(
                self._handler, str(root), recursive=True, event_filter=_WATCHED
            )
        except OSError as exc:  # gone already, unreadable, or out of inotify watches
            logger.warning("cannot watch %s (%s); it is indexed once", root, exc)
            self.errors["watch"] += 1
        self._scan(root, folder)

    def _remove(self, root: Path) -> None:
        folder = self._folders.pop(root, None)
        if folder is not None and folder.watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError):  # already gone with its folder
                self._observer.unschedule(folder.watch)

    def _reindex(self, path: Path | None) -> None:
        for root, folder in self._folders.items():
            if path is None or path == root:
                self._scan(root, folder)
            elif path.is_relative_to(root):
                folder.changed.add(path)
        self._flush()

    def _scan(self, root: Path, folder: _Folder) -> None:
        def progress(done: int, total: int) -> None:
            if self.on_progress is not None:
                self.on_progress(root, done, total)

        report = folder.indexer.scan(progress, should_stop=self._stopping.is_set)
        if self._stopping.is_set():
            return
        folder.report = report
        folder.scanned = True
        if self.on_batch is not None:
            self.on_batch(root, report)

    def _buffer(self, path: Path, text: str) -> None:
        owner = self._owner(path)
        if owner is None or owner.indexer.filter.file_reason(path) is not None:
            return  # outside every folder, or excluded (secrets stay out even when open)
        buffer = self._buffers.get(path)
        if buffer is None:
            buffer = self._buffers[path] = OpenBuffer(text, language_of(path.suffix))
        else:
            buffer.replace(text)
        relative = path.relative_to(owner.indexer.root).as_posix()
        owner.indexer.open_buffers.add(relative)
        owner.indexer.put_text(relative, buffer.source, buffer.parsed, buffer.tree)

    def _close(self, path: Path) -> None:
        self._buffers.pop(path, None)
        owner = self._owner(path)
        if owner is not None:
            owner.indexer.open_buffers.discard(path.relative_to(owner.indexer.root).as_posix())
            owner.changed.add(path)  # the file on disk is the truth again
            self._flush()

    def _owner(self, path: Path) -> _Folder | None:
        roots = [root for root in self._folders if path.is_relative_to(root)]
        return self._folders[max(roots, key=lambda r: len(r.parts))] if roots else None


class EventHandler(FileSystemEventHandler):
    """Runs on watchdog's thread: only queues what happened (filtering is the worker's)."""

    def __init__(self, submit: Callable[[Job], None]) -> None:
        self._submit = submit

    def on_any_event(self, event: FileSystemEvent) -> None:
        dest = _text(event.dest_path) if event.event_type == "moved" else None
        path = Path(_text(event.src_path))
        self._submit(Event(event.event_type, path, Path(dest) if dest else None))


def _watched(root: Path, path: Path) -> bool:
    """Under `root` and outside the folders never indexed (.git churn, venvs, node_modules)."""
    if not path.is_relative_to(root):
        return False
    return not DEFAULT_IGNORED_DIRS.intersection(path.relative_to(root).parts)


def _text(path: str | bytes) -> str:
    return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path
