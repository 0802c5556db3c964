"""FolderIndexer: full scans and refreshes of real trees into a RecordingSink."""

from __future__ import annotations

import json
import os
import select
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from indexer.filters import IndexRules
from indexer.scan import Fingerprint, FolderIndexer, ScanReport
from tests.indexer_tests.sinks import RecordingSink

T = TypeVar("T")


def write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bounded(fn: Callable[[], T], timeout: float = 10.0) -> T:
    """Run `fn` on a daemon thread; fail (instead of hanging the suite) past `timeout`."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    if errors:
        raise errors[0]
    return result[0]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root / "a.py", "def a():\n    return 1\n")
    write(root / "src" / "b.js", "function b() { return 2; }\n")
    write(root / "docs" / "c.md", "# C\n\ntext\n")
    write(root / "notes.txt", "not source\n")
    write(root / ".env", "TOKEN=1\n")
    write(root / "node_modules" / "dep" / "index.js", "module.exports = 1;\n")
    write(root / "build" / "out.py", "x = 1\n")
    write(root / ".gitignore", "ignored.py\ngen/\n")
    write(root / "ignored.py")
    write(root / "gen" / "g.py")
    (root / "bin.py").write_bytes(b"x = 1\0\n")
    (root / "latin.py").write_bytes(b"caf\xe9 = 1\n")
    (root / "big.py").write_bytes(b"#" * 5000 + b"\n")
    return root


RULES = IndexRules(max_bytes=4096)


def test_initial_scan_counts_and_reasons(tree: Path) -> None:
    sink = RecordingSink()
    progress: list[tuple[int, int]] = []
    report = FolderIndexer(tree, sink, RULES).scan(
        lambda done, total: progress.append((done, total))
    )
    assert sink.paths() == {"a.py", "src/b.js", "docs/c.md"}
    assert report.indexed == 3
    assert report.unchanged == report.dropped == report.moved == 0
    assert report.skipped == Counter(
        {
            "ignored_dir": 2,  # node_modules/, build/ (folders: never walked)
            "gitignored": 2,  # ignored.py and the gen/ folder
            "not_source": 2,  # notes.txt, .gitignore
            "secret": 1,
            "binary": 1,
            "not_utf8": 1,
            "too_large": 1,
        }
    )
    total = len(progress)
    assert progress == [(i, total) for i in range(1, total + 1)]
    assert total == 3 + 2 + 1 + 3 + 1  # every candidate file walked, ignored folders excluded
    assert sink.commits == 1
    stored = sink.get("a.py")
    assert stored is not None
    assert stored.text == "def a():\n    return 1\n"
    assert [(c.kind, c.name) for c in stored.chunks] == [("function", "a")]
    stat = (tree / "a.py").stat()
    assert (stored.fingerprint.size, stored.fingerprint.mtime_ns) == (
        stat.st_size,
        stat.st_mtime_ns,
    )
    assert report.seconds > 0
    assert report.as_dict()["skipped"] == dict(sorted(report.skipped.items()))


def test_rescan_of_an_unchanged_tree_reads_nothing(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    puts = sink.puts
    report = indexer.scan()
    assert report.indexed == 0
    assert report.unchanged == 3
    assert sink.puts == puts
    assert sink.touches == 0
    # a new indexer over the same sink (a daemon restart) does not re-read either
    report = FolderIndexer(tree, sink, RULES).scan()
    assert (report.indexed, report.unchanged, sink.puts, sink.touches) == (0, 3, puts, 0)


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def test_touch_without_change_is_a_touch_not_a_put(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    puts = sink.puts
    bump_mtime(tree / "a.py")
    report = indexer.scan()
    assert (report.indexed, report.unchanged) == (0, 3)
    assert sink.puts == puts
    assert sink.touches == 1
    stored = sink.get("a.py")
    assert stored is not None
    assert stored.fingerprint.mtime_ns == (tree / "a.py").stat().st_mtime_ns
    report = indexer.scan()  # the new mtime was remembered
    assert sink.touches == 1


def test_changed_content_is_put_again(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    puts = sink.puts
    write(tree / "a.py", "def a():\n    return 2\n")  # same size
    bump_mtime(tree / "a.py")
    report = indexer.scan()
    assert report.indexed == 1
    assert sink.puts == puts + 1
    assert sink.text_of("a.py") == "def a():\n    return 2\n"


def test_deleted_file_is_dropped(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    (tree / "src" / "b.js").unlink()
    shutil.rmtree(tree / "docs")
    report = indexer.scan()
    assert report.dropped == 2
    assert sink.paths() == {"a.py"}
    assert sink.drops == 2


def test_file_that_becomes_unindexable_is_dropped(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    (tree / "a.py").write_bytes(b"\0" * 10)
    write(tree / ".gitignore", "ignored.py\ngen/\nsrc/\n")
    indexer.filter.forget_gitignore(tree)
    report = indexer.scan()
    assert sink.paths() == {"docs/c.md"}
    assert report.dropped == 2
    assert report.skipped["binary"] == 2


def test_new_indexer_drops_what_the_sink_knows_but_the_disk_lacks(tree: Path) -> None:
    sink = RecordingSink()
    FolderIndexer(tree, sink, RULES).scan()
    (tree / "a.py").unlink()
    report = FolderIndexer(tree, sink, RULES).scan()
    assert report.dropped == 1
    assert "a.py" not in sink.paths()


def test_open_buffers_are_neither_read_nor_dropped(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    indexer.open_buffers.add("a.py")
    write(tree / "a.py", "changed on disk\n")
    report = indexer.scan()
    assert sink.text_of("a.py") == "def a():\n    return 1\n"
    (tree / "a.py").unlink()
    report = indexer.scan()
    assert report.dropped == 0
    assert "a.py" in sink.paths()


def test_symlink_loop_is_not_followed(tree: Path) -> None:
    os.symlink(tree, tree / "loop", target_is_directory=True)
    os.symlink(tree / "src", tree / "src" / "self")
    sink = RecordingSink()
    report = bounded(lambda: FolderIndexer(tree, sink, RULES).scan())
    assert sink.paths() == {"a.py", "src/b.js", "docs/c.md"}
    assert report.indexed == 3


def test_symlinked_file_is_indexed_by_its_own_path(tree: Path) -> None:
    os.symlink(tree / "a.py", tree / "alias.py")
    sink = RecordingSink()
    bounded(lambda: FolderIndexer(tree, sink, RULES).scan())
    assert sink.text_of("alias.py") == sink.text_of("a.py")
    os.symlink(tree / "missing.py", tree / "dangling.py")
    report = bounded(lambda: FolderIndexer(tree, sink, RULES).scan())
    assert report.skipped["vanished"] == 1


def _locked_tree(base: Path) -> Path:
    root = base / "proj"
    write(root / "ok.py", "def ok():\n    pass\n")
    write(root / "locked" / "hidden.py", "x = 1\n")
    write(root / "closed.py", "y = 2\n")
    os.chmod(root / "locked", 0)
    os.chmod(root / "closed.py", 0)
    return root


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads through chmod 000")
def test_unreadable_folder_is_counted_and_survived(tmp_path: Path) -> None:
    root = _locked_tree(tmp_path)
    try:
        sink = RecordingSink()
        report = bounded(lambda: FolderIndexer(root, sink).scan())
    finally:
        os.chmod(root / "locked", 0o755)
        os.chmod(root / "closed.py", 0o644)
    assert sink.paths() == {"ok.py"}
    assert report.skipped["unreadable_dir"] == 1
    assert report.skipped["unreadable"] == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged variant runs in-process")
def test_unreadable_folder_as_an_unprivileged_child(tmp_path: Path) -> None:
    """As root, chmod 000 stops nobody: scan in a forked child that dropped to `nobody`."""
    base = Path(tempfile.mkdtemp(prefix="codeswift-unreadable-"))
    try:
        os.chmod(base, 0o755)
        root = _locked_tree(base)
        for path in (root, root / "ok.py"):
            os.chmod(path, 0o755)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                sink = RecordingSink()
                report = FolderIndexer(root, sink).scan()
                payload = {"paths": sorted(sink.paths()), "skipped": dict(report.skipped)}
                os.write(write_end, json.dumps(payload).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 10)
        data = b""
        if ready:
            while chunk := os.read(read_end, 65536):
                data += chunk
        os.close(read_end)
        deadline = time.monotonic() + 10
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if status[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the unprivileged scan did not finish")
        if os.waitstatus_to_exitcode(status[1]) != 0:
            pytest.skip("cannot drop privileges to nobody here")
        payload = json.loads(data)
        assert payload["paths"] == ["ok.py"]
        assert payload["skipped"] == {"unreadable_dir": 1, "unreadable": 1}
    finally:
        os.chmod(base / "proj" / "locked", 0o755)
        shutil.rmtree(base, ignore_errors=True)


# -- refresh --------------------------------------------------------------------------------


def test_refresh_of_changed_paths(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    write(tree / "new.py", "def new():\n    pass\n")
    (tree / "a.py").unlink()
    write(tree / "pkg" / "m.py", "m = 1\n")
    report = indexer.refresh([tree / "new.py", tree / "a.py", tree / "pkg"])
    assert (report.indexed, report.dropped) == (2, 1)
    assert sink.paths() == {"new.py", "pkg/m.py", "src/b.js", "docs/c.md"}
    shutil.rmtree(tree / "pkg")
    report = indexer.refresh([tree / "pkg"])
    assert report.dropped == 1
    assert "pkg/m.py" not in sink.paths()


def test_refresh_rename_is_a_move(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    os.rename(tree / "a.py", tree / "renamed.py")
    report = indexer.refresh(
        [tree / "a.py", tree / "renamed.py"], {tree / "a.py": tree / "renamed.py"}
    )
    assert report.moved == 1
    assert report.indexed == 0
    assert sink.log[-1] == ("move", "a.py", "renamed.py")
    assert sink.text_of("renamed.py") == "def a():\n    return 1\n"
    assert "a.py" not in sink.paths()


def test_refresh_rename_with_new_content_is_reread(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    os.rename(tree / "a.py", tree / "renamed.py")
    write(tree / "renamed.py", "def renamed():\n    pass\n")
    report = indexer.refresh(
        [tree / "a.py", tree / "renamed.py"], {tree / "a.py": tree / "renamed.py"}
    )
    assert (report.moved, report.indexed, report.dropped) == (0, 1, 1)
    assert sink.text_of("renamed.py") == "def renamed():\n    pass\n"
    assert sink.moves == 0


def test_refresh_rename_into_an_excluded_place_drops(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    os.rename(tree / "a.py", tree / "gen" / "a.py")
    report = indexer.refresh(
        [tree / "a.py", tree / "gen" / "a.py"], {tree / "a.py": tree / "gen" / "a.py"}
    )
    assert (report.moved, report.dropped) == (0, 1)
    assert "gen/a.py" not in sink.paths()


def test_refresh_gitignore_change(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    write(tree / ".gitignore", "ignored.py\ngen/\na.py\n")
    report = indexer.refresh([tree / ".gitignore"])
    assert "a.py" not in sink.paths()
    assert report.dropped == 1
    (tree / ".gitignore").unlink()
    report = indexer.refresh([tree / ".gitignore"])
    assert {"a.py", "ignored.py", "gen/g.py"} <= sink.paths()


def test_refresh_nested_gitignore_hides_a_folder(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    write(tree / "src" / "deep" / "d.py")
    indexer.scan()
    assert "src/deep/d.py" in sink.paths()
    write(tree / "src" / ".gitignore", "deep/\n")
    indexer.refresh([tree / "src" / ".gitignore"])
    assert sink.paths() == {"a.py", "src/b.js", "docs/c.md"}


def test_refresh_of_the_root_itself_gone(tree: Path) -> None:
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    shutil.rmtree(tree)
    report = indexer.refresh([tree])
    assert sink.paths() == set()
    assert report.dropped == 3


def test_fingerprint_of_a_buffer_never_equals_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py")
    raw = path.read_bytes()
    on_disk = Fingerprint.of(raw, path.stat())
    unsaved = Fingerprint.of(raw, None)
    assert on_disk.sha1 == unsaved.sha1
    assert on_disk != unsaved
    assert unsaved.mtime_ns == -1


def test_report_merge() -> None:
    a = ScanReport(indexed=1, unchanged=2, skipped=Counter({"binary": 1}), seconds=0.5)
    b = ScanReport(indexed=3, dropped=1, moved=2, skipped=Counter({"binary": 2, "secret": 1}))
    a.merge(b)
    assert a.as_dict() == {
        "indexed": 4,
        "unchanged": 2,
        "dropped": 1,
        "moved": 2,
        "skipped": {"binary": 3, "secret": 1},
        "seconds": 0.5,
    }


# -- known bugs -----------------------------------------------------------------------------


def test_refresh_does_not_follow_a_symlinked_folder(tree: Path, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "private.py").parent
    sink = RecordingSink()
    indexer = FolderIndexer(tree, sink, RULES)
    indexer.scan()
    os.symlink(outside, tree / "link", target_is_directory=True)
    os.symlink(tree, tree / "loop", target_is_directory=True)
    bounded(lambda: indexer.refresh([tree / "link", tree / "loop"]))
    assert sink.paths() == {"a.py", "src/b.js", "docs/c.md"}


def test_negation_under_an_ignored_folder_is_consistent(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / ".gitignore", "gen\n")
    write(root / "gen" / ".gitignore", "!a.py\n")
    write(root / "gen" / "a.py")
    sink = RecordingSink()
    indexer = FolderIndexer(root, sink)
    indexer.scan()
    scanned = sink.paths()
    indexer.refresh([root / "gen" / "a.py"])
    assert sink.paths() == scanned


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "proj" / "pipe.py"
    path.parent.mkdir()
    write(path.parent / "ok.py")
    os.mkfifo(path)
    yield path
    # release a reader that is still blocked in open(): a writer that closes at once
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no reader left
    os.close(fd)


def test_fifo_does_not_hang_the_scan(fifo: Path) -> None:
    sink = RecordingSink()
    report = bounded(lambda: FolderIndexer(fifo.parent, sink).scan(), timeout=1.5)
    assert sink.paths() == {"ok.py"}
    assert sum(report.skipped.values()) == 1
