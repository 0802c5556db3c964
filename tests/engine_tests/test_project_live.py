"""The project store fed by the real workspace indexer: saves become drafts, stale code does not.

Real files, a real watchdog observer, the real store; the one-token-per-character tokenizer
keeps it fast (the real tokenizer runs the same path in model_tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from daemon.assembly import ShardSink, open_project, scan_project
from daemon.engine.datastore import SuffixIndex
from daemon.engine.project_index import ProjectIndex
from indexer.workspace import WorkspaceIndexer
from tests.engine_tests.fakes import CharTokenizer


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def drafts(store: ProjectIndex, context: str, depth: int = 24) -> set[str]:
    """Every continuation the store's layers offer after `context`."""
    found = set()
    for layer in store.layers():
        match = layer.longest_match(chars(context), max_len=len(context))
        if match is not None and match.length == len(context):
            found |= {"".join(map(chr, c)) for c in layer.continuations(match, depth, 64)}
    return found


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_saved_code_is_drafted_and_replaced_code_is_not(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "util.py").write_text("def scale_vector(v):\n    return v * 2\n")
    store = open_project(root, CharTokenizer(), folder=tmp_path / "shards")
    with WorkspaceIndexer(lambda folder: ShardSink(store.shards), debounce_s=0.05) as indexer:
        indexer.add_folder(root)
        assert indexer.wait_idle(10)
        assert "v * 2\n" in "".join(drafts(store, "    return "))

        (root / "util.py").write_text("def scale_vector(v):\n    return v * 3 + offset\n")
        assert eventually(lambda: any("3 + offset" in d for d in drafts(store, "return v * ")))
        assert not any(d.startswith("2") for d in drafts(store, "return v * "))  # stale: hidden

        (root / "new_module.py").write_text("def fresh_helper_zz(x):\n    return x ** 7\n")
        assert eventually(
            lambda: any("x ** 7" in d for d in drafts(store, "fresh_helper_zz(x):\n"))
        )

        (root / "new_module.py").unlink()
        assert eventually(lambda: not drafts(store, "fresh_helper_zz(x):\n"))
    assert store.shards.files == ["util.py"]


def test_layers_hide_stale_copies_until_the_base_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    for n in range(20):
        (root / f"m{n}.py").write_text(f"def f{n}():\n    return {n}\n" * 40)
    store = open_project(root, CharTokenizer(), folder=tmp_path / "shards")
    scan_project(store)
    assert len(store.layers()) == 1
    rebuilds = store.rebuilds

    (root / "m3.py").write_text("def f3():\n    return 'changed'\n")
    scan_project(store)  # sync compacts: one base again
    assert store.rebuilds == rebuilds + 1

    from indexer.scan import FolderIndexer

    (root / "m4.py").write_text("def f4():\n    return 'edited'\n")
    FolderIndexer(root, ShardSink(store.shards)).refresh([root / "m4.py"])
    layers = store.layers()
    assert len(layers) == 2 and store.rebuilds == rebuilds + 1  # a small change: no rebuild
    assert isinstance(layers[0], SuffixIndex) and layers[0].hidden is not None
    assert drafts(store, "def f4():\n    return ", depth=9) == {"'edited'\n"}


def test_a_restart_reads_nothing_and_a_touch_reparses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    scan_project(open_project(root, CharTokenizer(), folder=tmp_path / "shards"))
    store = open_project(root, CharTokenizer(), folder=tmp_path / "shards")
    assert scan_project(store)["indexed"] == 0
    (root / "a.py").touch()
    time.sleep(0.01)
    report = scan_project(store)
    assert report["indexed"] == 0 and report["unchanged"] == 1
