"""The indexer and project store with the real Qwen tokenizer: a save is drafted from at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import require_real_model

pytestmark = pytest.mark.real_model


def test_just_saved_function_is_retrieved_with_real_tokens(tmp_path: Path) -> None:
    require_real_model()
    from daemon.assembly import ShardSink, open_project
    from daemon.engine.models import load_tokenizer
    from indexer.workspace import WorkspaceIndexer

    tokenizer = load_tokenizer("qwen2.5-coder-0.5b")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "geometry.py").write_text("import math\n\n\ndef norm(v):\n    return math.hypot(*v)\n")
    store = open_project(root, tokenizer, folder=tmp_path / "shards")
    saved = (
        "def rotate_point_quarter_turn(point, origin):\n"
        "    dx, dy = point[0] - origin[0], point[1] - origin[1]\n"
        "    return (origin[0] - dy, origin[1] + dx)\n"
    )
    ids = tokenizer(saved, add_special_tokens=False)["input_ids"]
    context, following = ids[:14], tuple(ids[14:20])

    def retrieved() -> bool:
        for layer in store.layers():
            match = layer.longest_match(context)
            if match is None or match.length < 8:
                continue
            if following in {c[:6] for c in layer.continuations(match, 10, 32)}:
                return True
        return False

    with WorkspaceIndexer(lambda folder: ShardSink(store.shards), debounce_s=0.05) as indexer:
        indexer.add_folder(root)
        assert indexer.wait_idle(30)
        assert not retrieved()
        with (root / "geometry.py").open("a") as handle:
            handle.write("\n\n" + saved)
        deadline = time.monotonic() + 10
        while not retrieved() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert retrieved()
        stats = indexer.stats()
    (folder,) = stats["folders"].values()
    assert folder["files"] == 1 and folder["chunks"] >= 3 and folder["tokens"] > len(ids)
