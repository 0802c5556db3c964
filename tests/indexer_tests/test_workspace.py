"""WorkspaceIndexer with a real watchdog (inotify) observer on real folders.

Nothing here is mocked: files are written, renamed and deleted on disk and the test waits, at
most a few seconds each time, until the RecordingSink shows the result.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer.filters import IndexRules
from indexer.scan import ScanReport
from indexer.workspace import WorkspaceIndexer
from tests.indexer_tests.sinks import RecordingSink, eventually

DEBOUNCE_S = 0.05
WAIT_S = 10.0


def write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class Harness:
    """One started WorkspaceIndexer, its sinks (one per folder) and what its callbacks saw."""

    def __init__(
        self,
        rules: IndexRules | None = None,
        debounce_s: float = DEBOUNCE_S,
        max_delay_s: float = 0.5,
        sink_type: type[RecordingSink] = RecordingSink,
    ) -> None:
        self._lock = threading.Lock()
        self._sink_type = sink_type
        self.sinks: dict[Path, RecordingSink] = {}
        self.batches: list[tuple[Path, ScanReport]] = []
        self.progress: list[tuple[Path, int, int]] = []
        self.indexer = WorkspaceIndexer(
            self._sink_for,
            rules,
            debounce_s=debounce_s,
            max_delay_s=max_delay_s,
            on_progress=self._on_progress,
            on_batch=self._on_batch,
        )

    def _sink_for(self, root: Path) -> RecordingSink:
        with self._lock:
            sink = self.sinks[root] = self._sink_type()
            return sink

    def _on_progress(self, root: Path, done: int, total: int) -> None:
        with self._lock:
            self.progress.append((root, done, total))

    def _on_batch(self, root: Path, report: ScanReport) -> None:
        with self._lock:
            self.batches.append((root, report))

    def add(self, root: Path) -> RecordingSink:
        """Add a folder and wait for its initial scan."""
        root.mkdir(parents=True, exist_ok=True)
        self.indexer.add_folder(root)
        assert self.indexer.wait_idle(WAIT_S)
        with self._lock:
            return self.sinks[root.resolve()]

    def worker_alive(self) -> bool:
        worker = self.indexer._worker  # private, but the only way to see the thread died
        return worker is not None and worker.is_alive()

    def settle(self, quiet_s: float = 0.3) -> None:
        """Let late inotify events arrive, then wait until they are processed."""
        time.sleep(quiet_s)
        assert self.indexer.wait_idle(WAIT_S)


@pytest.fixture
def ws() -> Iterator[Harness]:
    harness = Harness()
    harness.indexer.start()
    try:
        yield harness
    finally:
        harness.indexer.stop()
    assert harness.indexer.errors == {}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = (tmp_path / "proj").resolve()
    path.mkdir()
    return path


def indexed(sink: RecordingSink, relative: str, text: str) -> bool:
    return sink.text_of(relative) == text


def settled_on_disk(sink: RecordingSink, path: Path, relative: str) -> bool:
    """The sink holds the file with the fingerprint of its current bytes on disk."""
    stored = sink.get(relative)
    if stored is None:
        return False
    stat = path.stat()
    return (stored.fingerprint.size, stored.fingerprint.mtime_ns) == (
        stat.st_size,
        stat.st_mtime_ns,
    ) and stored.text == path.read_text(encoding="utf-8")


# -- single files ---------------------------------------------------------------------------


def test_initial_scan_reports_progress_and_a_batch(ws: Harness, root: Path) -> None:
    for i in range(5):
        write(root / f"m{i}.py", f"def m{i}():\n    pass\n")
    sink = ws.add(root)
    assert sink.paths() == {f"m{i}.py" for i in range(5)}
    assert [p[1:] for p in ws.progress] == [(i, 5) for i in range(1, 6)]
    assert ws.batches[0][0] == root
    assert ws.batches[0][1].indexed == 5
    stats = ws.indexer.stats()
    assert stats["folders"][str(root)]["files"] == 5
    assert stats["folders"][str(root)]["indexed"] == 5
    assert ws.indexer.folders == [root]


def test_create_edit_and_delete(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    path = write(root / "a.py", "def first():\n    pass\n")
    assert eventually(lambda: indexed(sink, "a.py", "def first():\n    pass\n"), WAIT_S)
    stored = sink.get("a.py")
    assert stored is not None
    assert [(c.kind, c.name) for c in stored.chunks] == [("function", "first")]

    write(path, "def second():\n    return 2\n")  # edit and save
    assert eventually(lambda: indexed(sink, "a.py", "def second():\n    return 2\n"), WAIT_S)
    stored = sink.get("a.py")
    assert stored is not None
    assert [c.name for c in stored.chunks] == ["second"]

    path.unlink()
    assert eventually(lambda: "a.py" not in sink.paths(), WAIT_S)
    assert sink.drops >= 1


def test_rename_is_a_move(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    text = "def keep():\n    return 'same'\n"
    old = write(root / "old.py", text)
    assert eventually(lambda: settled_on_disk(sink, old, "old.py"), WAIT_S)
    ws.settle()
    puts = sink.puts
    os.rename(old, root / "new.py")
    assert eventually(lambda: sink.paths() == {"new.py"}, WAIT_S)
    assert sink.text_of("new.py") == text
    assert sink.moves == 1
    assert ("move", "old.py", "new.py") in sink.log
    ws.settle()
    assert sink.puts == puts  # not re-parsed


def test_atomic_save_by_rename_over_the_file(ws: Harness, root: Path) -> None:
    """Editors write a temporary file and rename it over the original."""
    sink = ws.add(root)
    path = write(root / "doc.py", "version = 1\n")
    assert eventually(lambda: settled_on_disk(sink, path, "doc.py"), WAIT_S)
    for version in range(2, 5):
        temporary = write(root / f".doc.py.tmp{version}", f"version = {version}\n")
        os.replace(temporary, path)
        text = f"version = {version}\n"
        assert eventually(lambda text=text: indexed(sink, "doc.py", text), WAIT_S)
    ws.settle()
    assert sink.paths() == {"doc.py"}


def test_idle_workspace_does_no_work(ws: Harness, root: Path) -> None:
    """The indexer's own reads must not come back as events."""
    write(root / "a.py", "a = 1\n")
    sink = ws.add(root)
    ws.indexer.reindex()
    assert ws.indexer.wait_idle(WAIT_S)
    ws.settle()
    events, batches, puts = ws.indexer.events, ws.indexer.batches, sink.puts
    time.sleep(0.3)
    assert (ws.indexer.events, ws.indexer.batches, sink.puts) == (events, batches, puts)


def test_rename_into_a_subfolder(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    (root / "pkg").mkdir()
    old = write(root / "mod.py", "VALUE = 1\n")
    assert eventually(lambda: settled_on_disk(sink, old, "mod.py"), WAIT_S)
    ws.settle()
    os.rename(old, root / "pkg" / "mod.py")
    assert eventually(lambda: sink.paths() == {"pkg/mod.py"}, WAIT_S)
    assert sink.text_of("pkg/mod.py") == "VALUE = 1\n"


def test_broken_python_file_is_still_indexed(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    text = "def good():\n    return 1\n\n\ndef bad(:\n    pass\n\n\ndef also_good():\n    pass\n"
    write(root / "broken.py", text)
    assert eventually(lambda: indexed(sink, "broken.py", text), WAIT_S)
    stored = sink.get("broken.py")
    assert stored is not None
    names = {c.name for c in stored.chunks if c.kind == "function"}
    assert {"good", "also_good"} <= names


def test_files_that_never_qualify_stay_out(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    for name in (".env", ".env.local", "id_rsa", "server.pem", "credentials.json"):
        write(root / name, "SECRET=hunter2\n")
    write(root / "node_modules" / "dep" / "index.js", "module.exports = 1;\n")
    write(root / "build" / "gen.py", "x = 1\n")
    (root / "blob.py").write_bytes(b"\0\1\2")
    write(root / "notes.txt", "text\n")
    write(root / "marker.py", "m = 1\n")  # written last: once it is in, the rest was seen
    assert eventually(lambda: "marker.py" in sink.paths(), WAIT_S)
    ws.settle()
    ws.indexer.open_buffer(root / ".env", "SECRET=typed\n")  # open in the editor: still out
    assert ws.indexer.wait_idle(WAIT_S)
    assert sink.paths() == {"marker.py"}
    assert ws.indexer.stats()["open_buffers"] == 0


# -- folders --------------------------------------------------------------------------------


def test_directory_moved_in_from_outside(ws: Harness, root: Path, tmp_path: Path) -> None:
    sink = ws.add(root)
    outside = tmp_path / "outside" / "pkg"
    write(outside / "x.py", "def x():\n    pass\n")
    write(outside / "sub" / "y.py", "def y():\n    pass\n")
    write(outside / "sub" / "deeper" / "z.md", "# z\n")
    os.rename(outside, root / "pkg")
    expected = {"pkg/x.py", "pkg/sub/y.py", "pkg/sub/deeper/z.md"}
    assert eventually(lambda: sink.paths() == expected, WAIT_S)
    # the moved-in folders are watched too
    write(root / "pkg" / "sub" / "deeper" / "late.py", "late = 1\n")
    assert eventually(lambda: "pkg/sub/deeper/late.py" in sink.paths(), WAIT_S)


def test_directory_moved_out_and_renamed(ws: Harness, root: Path, tmp_path: Path) -> None:
    write(root / "a" / "one.py", "one = 1\n")
    write(root / "b" / "two.py", "two = 2\n")
    sink = ws.add(root)
    assert sink.paths() == {"a/one.py", "b/two.py"}
    os.rename(root / "a", tmp_path / "gone")
    os.rename(root / "b", root / "c")
    assert eventually(lambda: sink.paths() == {"c/two.py"}, WAIT_S)
    assert sink.text_of("c/two.py") == "two = 2\n"
    assert ("move", "b/two.py", "c/two.py") in sink.log  # kept, not re-parsed


def test_deleted_subfolder_drops_its_files(ws: Harness, root: Path) -> None:
    for name in ("pkg/a.py", "pkg/b.py", "pkg/deep/c.py", "keep.py"):
        write(root / name)
    sink = ws.add(root)
    assert len(sink.paths()) == 4
    shutil.rmtree(root / "pkg")
    assert eventually(lambda: sink.paths() == {"keep.py"}, WAIT_S)


def test_gitignore_added_then_removed(ws: Harness, root: Path) -> None:
    write(root / "keep.py", "keep = 1\n")
    write(root / "skip.py", "skip = 1\n")
    write(root / "gen" / "g.py", "g = 1\n")
    sink = ws.add(root)
    assert sink.paths() == {"keep.py", "skip.py", "gen/g.py"}
    gitignore = write(root / ".gitignore", "skip.py\ngen/\n")
    assert eventually(lambda: sink.paths() == {"keep.py"}, WAIT_S)
    gitignore.unlink()
    assert eventually(lambda: sink.paths() == {"keep.py", "skip.py", "gen/g.py"}, WAIT_S)
    assert sink.text_of("skip.py") == "skip = 1\n"


def test_nested_gitignore_at_run_time(ws: Harness, root: Path) -> None:
    write(root / "src" / "a.py")
    write(root / "src" / "local.py")
    sink = ws.add(root)
    write(root / "src" / ".gitignore", "local.py\n")
    assert eventually(lambda: sink.paths() == {"src/a.py"}, WAIT_S)
    write(root / "src" / "local2.py")  # not ignored: arrives
    assert eventually(lambda: "src/local2.py" in sink.paths(), WAIT_S)


# -- bursts and races -----------------------------------------------------------------------


def test_burst_of_files_is_batched(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    batches_before = ws.indexer.batches
    events_before = ws.indexer.events
    names = [f"d{i % 20}/f{i}.py" for i in range(2000)]
    for i, name in enumerate(names):
        write(root / name, f"def f{i}():\n    return {i}\n")
    assert eventually(lambda: sink.paths() == set(names), 15)
    assert ws.worker_alive()
    for name in names[::2]:
        (root / name).unlink()
    remaining = set(names[1::2])
    assert eventually(lambda: sink.paths() == remaining, 15)
    assert ws.worker_alive()
    ws.settle()
    assert sink.paths() == remaining
    assert sink.text_of("d1/f1.py") == "def f1():\n    return 1\n"
    events = ws.indexer.events - events_before
    batches = ws.indexer.batches - batches_before
    assert events >= 3000  # every file: created, modified, closed; then deleted
    assert 0 < batches < events / 10, (batches, events)


class SlowBufferSink(RecordingSink):
    """put() of `slow.py` takes a while, as a big buffer or a slow store would."""

    def put(self, relative: str, *args: Any, **kwargs: Any) -> None:
        if relative == "slow.py":
            time.sleep(0.5)
        super().put(relative, *args, **kwargs)


def test_worker_survives_a_job_that_outlasts_the_batch_deadline(root: Path) -> None:
    """A pending batch whose deadline passes while another job runs must still be flushed."""
    harness = Harness(debounce_s=0.3, max_delay_s=0.3, sink_type=SlowBufferSink)
    with harness.indexer:
        sink = harness.add(root)
        events = harness.indexer.events
        write(root / "x.py", "x = 1\n")
        assert eventually(lambda: harness.indexer.events > events, WAIT_S, every=0.005)
        harness.indexer.open_buffer(root / "slow.py", "slow = 1\n")  # runs past the deadline
        assert eventually(lambda: "slow.py" in sink.paths(), WAIT_S)
        assert eventually(lambda: "x.py" in sink.paths(), 1.5)
        assert harness.worker_alive()


def test_files_vanishing_between_event_and_read(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    for i in range(50):
        path = write(root / f"flash{i}.py", f"flash = {i}\n")
        path.unlink()
    ws.settle()
    fresh = write(root / "fresh.py", "fresh = 1\n")
    assert eventually(lambda: indexed(sink, "fresh.py", "fresh = 1\n"), WAIT_S)
    ws.settle()
    assert sink.paths() == {"fresh.py"}
    assert fresh.exists()
    assert ws.indexer.errors == {}


def test_rewrites_while_indexing_end_with_the_last_text(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    path = root / "busy.py"
    for i in range(100):
        write(path, f"value = {i}\n" + "# pad\n" * (i % 7))
    final = path.read_text()
    assert eventually(lambda: indexed(sink, "busy.py", final), WAIT_S)


# -- several folders ------------------------------------------------------------------------


def test_two_folders_then_one_removed(ws: Harness, tmp_path: Path) -> None:
    first, second = (tmp_path / "one").resolve(), (tmp_path / "two").resolve()
    sink_one, sink_two = ws.add(first), ws.add(second)
    write(first / "a.py", "a = 1\n")
    write(second / "b.py", "b = 1\n")
    assert eventually(lambda: "a.py" in sink_one.paths() and "b.py" in sink_two.paths(), WAIT_S)
    assert "b.py" not in sink_one.paths()

    ws.indexer.remove_folder(second)
    assert ws.indexer.wait_idle(WAIT_S)
    assert ws.indexer.folders == [first]
    puts = sink_two.puts
    write(second / "late.py", "late = 1\n")
    (second / "b.py").unlink()
    write(first / "after.py", "after = 1\n")
    assert eventually(lambda: "after.py" in sink_one.paths(), WAIT_S)
    ws.settle()
    assert sink_two.puts == puts
    assert sink_two.paths() == {"b.py"}  # the removed folder's sink is no longer touched
    assert str(second) not in ws.indexer.stats()["folders"]


def test_nested_folder_belongs_to_both_roots(ws: Harness, root: Path) -> None:
    outer = ws.add(root)
    inner = ws.add(root / "inner")
    write(root / "inner" / "x.py", "x = 1\n")
    assert eventually(lambda: "inner/x.py" in outer.paths() and "x.py" in inner.paths(), WAIT_S)


def test_watched_root_deleted(ws: Harness, tmp_path: Path) -> None:
    doomed, other = (tmp_path / "doomed").resolve(), (tmp_path / "other").resolve()
    for name in ("a.py", "pkg/b.py", "pkg/deep/c.py"):
        write(doomed / name)
    doomed_sink, other_sink = ws.add(doomed), ws.add(other)
    assert len(doomed_sink.paths()) == 3
    shutil.rmtree(doomed)
    assert eventually(lambda: doomed_sink.paths() == set(), WAIT_S)
    stats = ws.indexer.stats()
    assert stats["folders"][str(doomed)]["files"] == 0
    write(other / "alive.py", "alive = 1\n")
    assert eventually(lambda: "alive.py" in other_sink.paths(), WAIT_S)
    ws.indexer.remove_folder(doomed)  # its watch is already gone: must not fail
    assert ws.indexer.wait_idle(WAIT_S)
    assert ws.indexer.folders == [other]
    write(other / "still.py", "still = 1\n")
    assert eventually(lambda: "still.py" in other_sink.paths(), WAIT_S)


def test_missing_folder_is_survived(ws: Harness, tmp_path: Path) -> None:
    missing = (tmp_path / "missing").resolve()
    ws.indexer.add_folder(missing)
    assert ws.indexer.wait_idle(WAIT_S)
    assert ws.indexer.errors == {"watch": 1}
    assert ws.sinks[missing].paths() == set()
    assert ws.indexer.stats()["folders"][str(missing)]["skipped"] == {"unreadable_dir": 1}
    ws.indexer.errors.clear()
    other = ws.add(tmp_path / "other")
    write(tmp_path / "other" / "a.py")
    assert eventually(lambda: "a.py" in other.paths(), WAIT_S)


def test_reindex_picks_up_what_was_missed(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    ws.indexer.remove_folder(root)
    assert ws.indexer.wait_idle(WAIT_S)
    write(root / "missed.py", "missed = 1\n")
    ws.settle(0.1)
    assert "missed.py" not in sink.paths()
    sink = ws.add(root)  # a fresh sink: the scan indexes the whole folder
    assert "missed.py" in sink.paths()
    ws.indexer.reindex()
    assert ws.indexer.wait_idle(WAIT_S)
    assert sink.puts == 1
    ws.indexer.reindex(root / "missed.py")
    assert ws.indexer.wait_idle(WAIT_S)
    assert sink.puts == 1


# -- open buffers ---------------------------------------------------------------------------


def test_open_buffer_wins_over_disk(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    path = write(root / "buf.py", "def disk_one():\n    pass\n")
    assert eventually(lambda: settled_on_disk(sink, path, "buf.py"), WAIT_S)

    ws.indexer.open_buffer(path, "def typed():\n    pass\n")
    assert eventually(lambda: indexed(sink, "buf.py", "def typed():\n    pass\n"), WAIT_S)
    stored = sink.get("buf.py")
    assert stored is not None
    assert stored.fingerprint.mtime_ns == -1
    assert [c.name for c in stored.chunks] == ["typed"]
    assert ws.indexer.stats()["open_buffers"] == 1

    events = ws.indexer.events
    write(path, "def disk_two():\n    pass\n")
    assert eventually(lambda: ws.indexer.events > events, WAIT_S)
    ws.settle()
    assert sink.text_of("buf.py") == "def typed():\n    pass\n"

    ws.indexer.change_buffer(path, "def typed():\n    return 2\n")
    assert eventually(lambda: indexed(sink, "buf.py", "def typed():\n    return 2\n"), WAIT_S)

    ws.indexer.close_buffer(path)
    assert eventually(lambda: indexed(sink, "buf.py", "def disk_two():\n    pass\n"), WAIT_S)
    assert ws.indexer.stats()["open_buffers"] == 0


def test_typing_is_indexed_once_it_pauses(ws: Harness, root: Path) -> None:
    """A burst of keystrokes becomes one re-index of the latest text, after the pause: the
    model generates a completion after every key, and must not share the CPU with the index."""
    sink = ws.add(root)
    path = write(root / "typing.py", "def start():\n    pass\n")
    assert eventually(lambda: settled_on_disk(sink, path, "typing.py"), WAIT_S)
    ws.indexer.open_buffer(path, "def start():\n    pass\n")
    assert ws.indexer.wait_idle(WAIT_S)
    puts = sink.puts
    line = "    return compute(value)"
    for end in range(1, len(line) + 1):
        ws.indexer.change_buffer(path, f"def start():\n{line[:end]}\n")
    assert not ws.indexer.idle()  # the edits wait for the pause
    assert ws.indexer.wait_idle(WAIT_S)
    assert indexed(sink, "typing.py", f"def start():\n{line}\n")
    assert sink.puts == puts + 1


def test_unsaved_new_buffer_is_dropped_on_close(ws: Harness, root: Path) -> None:
    sink = ws.add(root)
    path = root / "untitled.py"
    ws.indexer.open_buffer(path, "draft = 1\n")
    assert eventually(lambda: indexed(sink, "untitled.py", "draft = 1\n"), WAIT_S)
    ws.indexer.close_buffer(path)
    assert eventually(lambda: "untitled.py" not in sink.paths(), WAIT_S)


def test_buffer_outside_every_folder_is_ignored(ws: Harness, root: Path, tmp_path: Path) -> None:
    sink = ws.add(root)
    ws.indexer.open_buffer(tmp_path / "elsewhere.py", "x = 1\n")
    ws.indexer.close_buffer(tmp_path / "elsewhere.py")
    assert ws.indexer.wait_idle(WAIT_S)
    assert sink.paths() == set()
    assert ws.indexer.errors == {}


# -- life cycle -----------------------------------------------------------------------------


def test_stop_joins_its_threads(root: Path) -> None:
    before = threading.active_count()
    harness = Harness()
    indexer = harness.indexer
    indexer.start()
    indexer.start()  # idempotent
    assert threading.active_count() > before
    sink = harness.add(root)
    write(root / "a.py", "a = 1\n")
    assert eventually(lambda: "a.py" in sink.paths(), WAIT_S)
    indexer.stop()
    assert eventually(lambda: threading.active_count() <= before, 2.0), [
        t.name for t in threading.enumerate()
    ]
    indexer.stop()  # a second stop is harmless
    assert indexer.errors == {}


def test_context_manager_and_stats(root: Path) -> None:
    before = threading.active_count()
    harness = Harness()
    with harness.indexer as indexer:
        harness.add(root)
        stats = indexer.stats()
        assert set(stats) == {
            "folders",
            "open_buffers",
            "events",
            "batches",
            "last_batch_ms",
            "errors",
        }
    assert eventually(lambda: threading.active_count() <= before, 2.0)


# -- known bugs -----------------------------------------------------------------------------


def test_root_below_a_folder_named_like_an_ignored_dir(ws: Harness, tmp_path: Path) -> None:
    root = (tmp_path / "build" / "proj").resolve()
    sink = ws.add(root)
    write(root / "a.py", "a = 1\n")
    assert eventually(lambda: "a.py" in sink.paths(), 2.0)


def test_symlinked_folder_created_at_run_time_is_not_followed(
    ws: Harness, root: Path, tmp_path: Path
) -> None:
    write(tmp_path / "outside" / "private.py", "private = 1\n")
    write(root / "a.py", "a = 1\n")
    sink = ws.add(root)
    os.symlink(tmp_path / "outside", root / "link", target_is_directory=True)
    write(root / "marker.py", "m = 1\n")
    assert eventually(lambda: "marker.py" in sink.paths(), WAIT_S)
    ws.settle()
    assert sink.paths() == {"a.py", "marker.py"}
