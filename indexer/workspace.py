"""The workspace indexer: watchdog observers feeding debounced batches to one worker thread.

Everything that touches a sink runs on the worker, in order: initial scans, batches of changed
paths, open-buffer edits. Events arrive on watchdog's thread and only enter a queue. The worker
waits on that queue (no polling), so an idle workspace costs no CPU. A batch is flushed once
no event came for `debounce_s`, or `max_delay_s` after its first event under a steady stream
(a `git checkout` of thousands of files becomes a few batches, not thousands of re-indexes).
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
    ) -> None:
        self.sink_for = sink_for
        self.rules = rules or IndexRules()
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        self.on_progress = on_progress
        self.on_batch = on_batch
        self._folders: dict[Path, _Folder] = {}
        self._buffers: dict[Path, OpenBuffer] = {}
        self._jobs: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None
        self._busy = threading.Event()  # set while jobs or pending events remain
        self._handler = _EventHandler(self._jobs, self._busy)
        self.errors: Counter[str] = Counter()
        self.events = 0
        self.batches = 0
        self.last_batch_ms = 0.0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is not None:
            return
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._worker = threading.Thread(target=self._run, name="codeswift-indexer", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and join both threads (pending events are dropped)."""
        if self._worker is None:
            return
        self._jobs.put(("stop",))
        self._worker.join(timeout)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        self._worker = self._observer = None

    def __enter__(self) -> WorkspaceIndexer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests (any thread) --------------------------------------------------------------

    def add_folder(self, root: Path) -> None:
        self._submit("add", root.resolve())

    def remove_folder(self, root: Path) -> None:
        self._submit("remove", root.resolve())

    def reindex(self, path: Path | None = None) -> None:
        """Re-check one file or folder, or (None) rescan every folder."""
        self._submit("reindex", path.resolve() if path else None)

    def open_buffer(self, path: Path, text: str) -> None:
        self._submit("buffer", path.resolve(), text)

    def change_buffer(self, path: Path, text: str) -> None:
        self._submit("buffer", path.resolve(), text)

    def close_buffer(self, path: Path) -> None:
        self._submit("close", path.resolve())

    def wait_idle(self, timeout: float) -> bool:
        """Block until every job and pending event is processed (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._busy.is_set() and self._jobs.empty():
                return True
            time.sleep(0.01)
        return False

    @property
    def folders(self) -> list[Path]:
        return sorted(self._folders)

    def stats(self) -> dict[str, Any]:
        return {
            "folders": {
                str(root): {**folder.indexer.sink.summary(), **folder.report.as_dict()}
                for root, folder in list(self._folders.items())
            },
            "open_buffers": len(self._buffers),
            "events": self.events,
            "batches": self.batches,
            "last_batch_ms": round(self.last_batch_ms, 2),
            "errors": dict(self.errors),
        }

    def _submit(self, *job: Any) -> None:
        self._busy.set()
        self._jobs.put(job)

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        first = last = 0.0  # arrival of the first and the latest pending event
        while True:
            pending = any(f.changed or f.moves for f in self._folders.values())
            timeout = None
            if pending:
                timeout = max(0.0, min(last + self.debounce_s, first + self.max_delay_s))
                timeout -= time.monotonic()
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                self._flush()
                self._settle()
                continue
            if job[0] == "stop":
                return
            try:
                if job[0] == "event":
                    now = time.monotonic()
                    first = first if pending else now
                    last = now
                    self._note(*job[1:])
                else:
                    getattr(self, f"_do_{job[0]}")(*job[1:])
            except Exception:  # one bad job must never end the watcher
                logger.exception("indexer job %s failed", job[0])
                self.errors[job[0]] += 1
            self._settle()

    def _settle(self) -> None:
        pending = any(f.changed or f.moves for f in self._folders.values())
        if not pending and self._jobs.empty():
            self._busy.clear()

    def _note(self, kind: str, path: Path, dest: Path | None) -> None:
        self.events += 1
        for root, folder in self._folders.items():
            if kind == "moved" and dest is not None:
                if path.is_relative_to(root) and dest.is_relative_to(root):
                    folder.moves[path] = dest
                for end in (path, dest):
                    if end.is_relative_to(root):
                        folder.changed.add(end)
            elif path.is_relative_to(root):
                folder.changed.add(path)

    def _flush(self) -> None:
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

    def _do_add(self, root: Path) -> None:
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

    def _do_remove(self, root: Path) -> None:
        folder = self._folders.pop(root, None)
        if folder is not None and folder.watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError):  # already gone with its folder
                self._observer.unschedule(folder.watch)

    def _do_reindex(self, path: Path | None) -> None:
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

        report = folder.indexer.scan(progress)
        folder.report = report
        folder.scanned = True
        if self.on_batch is not None:
            self.on_batch(root, report)

    def _do_buffer(self, path: Path, text: str) -> None:
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

    def _do_close(self, path: Path) -> None:
        self._buffers.pop(path, None)
        owner = self._owner(path)
        if owner is not None:
            owner.indexer.open_buffers.discard(path.relative_to(owner.indexer.root).as_posix())
            owner.changed.add(path)  # the file on disk is the truth again
            self._flush()

    def _owner(self, path: Path) -> _Folder | None:
        roots = [root for root in self._folders if path.is_relative_to(root)]
        return self._folders[max(roots, key=lambda r: len(r.parts))] if roots else None


class _EventHandler(FileSystemEventHandler):
    """Runs on watchdog's thread: only queues what happened."""

    def __init__(self, jobs: queue.Queue[tuple[Any, ...]], busy: threading.Event) -> None:
        self._jobs = jobs
        self._busy = busy

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = Path(_text(event.src_path))
        dest = Path(_text(event.dest_path)) if event.event_type == "moved" else None
        if DEFAULT_IGNORED_DIRS.intersection(path.parts) and (
            dest is None or DEFAULT_IGNORED_DIRS.intersection(dest.parts)
        ):
            return  # .git churn, virtual environments, node_modules
        self._busy.set()
        self._jobs.put(("event", event.event_type, path, dest))


def _text(path: str | bytes) -> str:
    return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path
