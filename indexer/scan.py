"""One workspace folder kept in line with a sink: full scans, and refreshes of changed paths.

The sink (the daemon's project store) remembers a fingerprint per file (size, mtime, content
hash), so a restart re-reads only files whose size or mtime moved, and re-parses only those
whose content hash changed too. Every file not indexed is counted by reason; nothing here
raises for a bad file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from indexer.chunks import ParsedFile, parse_source
from indexer.expressions import expressions_of
from indexer.filters import IndexRules, PathFilter, read_text
from indexer.languages import language_of

__all__ = ["Fingerprint", "FolderIndexer", "FolderSink", "ScanReport"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    size: int
    mtime_ns: int
    sha1: str

    @classmethod
    def of(cls, raw: bytes, stat: os.stat_result | None) -> Fingerprint:
        digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        if stat is None:  # an unsaved buffer: never equal to any file on disk
            return cls(len(raw), -1, digest)
        return cls(stat.st_size, stat.st_mtime_ns, digest)


class FolderSink(Protocol):
    """Where indexed files go (the daemon's project store for one folder). Paths are relative,
    with forward slashes. Called from one thread at a time."""

    def fingerprints(self) -> Mapping[str, Fingerprint]: ...

    def put(
        self,
        relative: str,
        parsed: ParsedFile,
        expressions: Counter[str],
        fingerprint: Fingerprint,
    ) -> None: ...

    def touch(self, relative: str, fingerprint: Fingerprint) -> None: ...

    def move(self, old: str, new: str, fingerprint: Fingerprint) -> None: ...

    def drop(self, relative: str) -> None: ...

    def commit(self) -> None: ...

    def summary(self) -> Mapping[str, Any]: ...


@dataclass
class ScanReport:
    indexed: int = 0  # parsed and handed to the sink in this run
    unchanged: int = 0
    dropped: int = 0
    moved: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def merge(self, other: ScanReport) -> None:
        self.indexed += other.indexed
        self.unchanged += other.unchanged
        self.dropped += other.dropped
        self.moved += other.moved
        self.skipped.update(other.skipped)
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "dropped": self.dropped,
            "moved": self.moved,
            "skipped": dict(sorted(self.skipped.items())),
            "seconds": round(self.seconds, 3),
        }


class FolderIndexer:
    """Scans and refreshes one folder into its sink."""

    def __init__(self, root: Path, sink: FolderSink, rules: IndexRules | None = None) -> None:
        self.root = root.resolve()
        self.sink = sink
        self.filter = PathFilter(self.root, rules)
        self.max_bytes = self.filter.rules.max_bytes
        self.open_buffers: set[str] = set()  # their unsaved text wins over the file on disk

    # -- whole folder -----------------------------------------------------------------------

    def scan(
        self, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None
    ) -> ScanReport:
        """Index what is new or changed, drop what is gone or now excluded. `should_stop` is
        asked between files: a scan told to stop keeps what it indexed and drops nothing (the
        files it did not reach are not gone)."""
        started = time.perf_counter()
        report = ScanReport()
        paths = list(self._walk(self.root, report))
        known = dict(self.sink.fingerprints())
        try:
            for done, path in enumerate(paths, start=1):
                if should_stop is not None and should_stop():
                    return report
                self._reconcile(path, known, report)
                if progress is not None:
                    progress(done, len(paths))
            seen = {self._relative(p) for p in paths}
            for relative in sorted(set(known) - seen - self.open_buffers):
                self.sink.drop(relative)  # gone, or inside a folder that is now excluded
                report.dropped += 1
        finally:  # told to stop, or interrupted (Ctrl-C): what was indexed stays indexed
            self.sink.commit()
            report.seconds = time.perf_counter() - started
        return report

    # -- changed paths ----------------------------------------------------------------------

    def refresh(self, paths: Iterable[Path], moves: Mapping[Path, Path] = {}) -> ScanReport:
        """Bring the given paths (files or folders, present or gone) in line with the disk."""
        started = time.perf_counter()
        report = ScanReport()
        known = dict(self.sink.fingerprints())
        done: set[Path] = set()
        for old, new in moves.items():
            if self._move(old, new, known, report):
                done.update((old, new))
        for path in sorted(set(paths) - done):
            if path.name == ".gitignore":
                self.filter.forget_gitignore(path.parent)
                path = path.parent  # what it hides or shows lies beside it
            if path.is_symlink() and path.is_dir():
                report.skipped["symlinked_dir"] += 1  # never followed, as in scan()
            elif path.is_dir():
                for file in self._walk(path, report):
                    self._reconcile(file, known, report)
                self._drop_under(path, known, report, keep_present=True)
            elif path.exists():
                self._reconcile(path, known, report, check_folders=True)
            else:
                self._drop_under(path, known, report, keep_present=False)
        self.sink.commit()
        report.seconds = time.perf_counter() - started
        return report

    def put_text(self, relative: str, raw: bytes, parsed: ParsedFile, tree: Any) -> None:
        """Index an open buffer's unsaved text (already parsed incrementally)."""
        self.sink.put(
            relative, parsed, expressions_of(tree, parsed.language), Fingerprint.of(raw, None)
        )
        self.sink.commit()

    # -- one file ---------------------------------------------------------------------------

    def _reconcile(
        self,
        path: Path,
        known: dict[str, Fingerprint],
        report: ScanReport,
        check_folders: bool = False,
    ) -> None:
        """Index, touch, skip or drop one file. A scan has vetted the folders on its way down;
        a single changed path has its folders checked here (`check_folders`)."""
        relative = self._relative(path)
        if relative in self.open_buffers:
            return
        reason = self.filter.file_reason(path)
        if reason is None and check_folders:
            reason = self._folder_reason(path)
        if reason is None:
            try:
                stat = path.stat()
            except FileNotFoundError:
                reason = "vanished"
            except OSError:
                reason = "unreadable"
        if reason is not None:
            report.skipped[reason] += 1
            self._forget(relative, known, report)
            return
        old = known.get(relative)
        if old is not None and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            report.unchanged += 1
            return
        raw, reason = read_text(path, self.max_bytes)
        if raw is None:
            report.skipped[reason or "unreadable"] += 1
            self._forget(relative, known, report)
            return
        fingerprint = Fingerprint.of(raw, stat)
        if old is not None and old.sha1 == fingerprint.sha1:
            self.sink.touch(relative, fingerprint)  # saved unchanged, or touched
            report.unchanged += 1
        else:
            language = language_of(path.suffix)
            parsed, tree = parse_source(raw, language)
            self.sink.put(relative, parsed, expressions_of(tree, language), fingerprint)
            report.indexed += 1
        known[relative] = fingerprint

    def _move(
        self, old: Path, new: Path, known: dict[str, Fingerprint], report: ScanReport
    ) -> bool:
        """A renamed file keeps its shard when its content did not change on the way."""
        before, after = self._relative(old), self._relative(new)
        fingerprint = known.get(before)
        if fingerprint is None or old.exists() or not new.is_file() or after in self.open_buffers:
            return False
        if self.filter.file_reason(new) is not None:
            return False
        try:
            stat = new.stat()
        except OSError:
            return False
        if (stat.st_size, stat.st_mtime_ns) != (fingerprint.size, fingerprint.mtime_ns):
            return False  # rename keeps mtime; anything else is re-read as a new file
        self.sink.move(before, after, fingerprint)
        known[after] = known.pop(before)
        report.moved += 1
        return True

    def _forget(self, relative: str, known: dict[str, Fingerprint], report: ScanReport) -> None:
        if known.pop(relative, None) is not None:
            self.sink.drop(relative)
            report.dropped += 1

    def _drop_under(
        self, path: Path, known: dict[str, Fingerprint], report: ScanReport, keep_present: bool
    ) -> None:
        """Forget files at or under `path` that are gone (or, for a folder, now excluded)."""
        prefix = self._relative(path)
        inside = [r for r in known if prefix == "." or r == prefix or r.startswith(prefix + "/")]
        for relative in inside:
            if relative in self.open_buffers:
                continue
            if keep_present and self._still_indexed(self.root / relative):
                continue
            self._forget(relative, known, report)

    def _still_indexed(self, file: Path) -> bool:
        if not file.exists() or self.filter.file_reason(file) is not None:
            return False
        return self._folder_reason(file) is None

    def _folder_reason(self, file: Path) -> str | None:
        """Why a folder on the way from the root to `file` is not walked (git never re-includes
        a file under an excluded folder), or None."""
        for folder in _between(self.root, file):
            if folder.is_symlink():
                return "symlinked_dir"
            reason = self.filter.folder_reason(folder)
            if reason is not None:
                return reason
        return None

    # -- walking ----------------------------------------------------------------------------

    def _walk(self, top: Path, report: ScanReport) -> Iterator[Path]:
        """Candidate files under `top`; symlinked folders are not followed (no loops)."""
        if top.is_symlink() or self._folder_reason(top / "x") is not None:
            return

        def unreadable(error: OSError) -> None:
            report.skipped["unreadable_dir"] += 1

        for folder, dirs, names in os.walk(top, onerror=unreadable):
            base = Path(folder)
            kept = []
            for name in sorted(dirs):
                reason = self.filter.folder_reason(base / name)
                if reason is None:
                    kept.append(name)
                else:
                    report.skipped[reason] += 1
            dirs[:] = kept
            for name in sorted(names):
                yield base / name

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _between(root: Path, file: Path) -> Iterator[Path]:
    """The folders strictly between `root` and `file`."""
    for parent in reversed(file.relative_to(root).parents[:-1]):
        yield root / parent
