"""Two processes writing one workspace's project store (two `codeswift index` runs, or the
servers of two editors open on the same folder) leave it equal to a fresh index."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, require_real_model
from tests.lsp_tests.client import Session

pytestmark = pytest.mark.real_model


def _edit(workspace: Path, rng: random.Random, round_: int) -> None:
    """Create, rewrite and delete some of the workspace's files."""
    for n in rng.sample(range(40), 12):
        path = workspace / f"pkg{n % 4}" / f"mod_{n}.py"
        path.parent.mkdir(exist_ok=True)
        if path.exists() and rng.random() < 0.3:
            path.unlink()
            continue
        body = "".join(f"    value += {round_} * {k} + {n}\n" for k in range(rng.randint(1, 30)))
        path.write_text(f"def step_{n}_{round_}(value):\n{body}    return value\n")


def _digest(workspace: Path, folder: Path | None = None) -> dict[str, Any]:
    """The workspace's store as loaded from disk, or (`folder`) a fresh index of its files."""
    from daemon.assembly import open_project, scan_project
    from daemon.engine.models import load_tokenizer
    from daemon.engine.registry import DEFAULT_MODEL

    store = open_project(workspace, load_tokenizer(DEFAULT_MODEL), folder=folder)
    if folder is not None:
        scan_project(store)
    return store.shards.digest()


def test_two_index_runs_at_once_while_files_change(tmp_path: Path) -> None:
    require_real_model()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    rng = random.Random(7)
    _edit(workspace, rng, 0)
    for round_ in range(1, 4):
        command = [sys.executable, "-m", "daemon", "index", str(workspace), "--json"]
        runs = [subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE) for _ in range(2)]
        time.sleep(rng.uniform(1.0, 4.0))
        _edit(workspace, rng, round_)  # while both scan
        for run in runs:
            _, err = run.communicate(timeout=300)
            assert run.returncode == 0, err.decode()
        # the last edits may have come after a scan passed them: one more run settles it
        subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
        fresh = _digest(workspace, tmp_path / f"fresh-{round_}")
        assert _digest(workspace) == fresh and len(fresh) > 10


def test_two_servers_indexing_on_save(tmp_path: Path) -> None:
    """Editors on one folder: both servers watch it, one client reports its saves."""
    require_real_model()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    rng = random.Random(11)
    _edit(workspace, rng, 0)

    async def scenario() -> None:
        sessions = [Session(), Session()]
        for session in sessions:
            await session.start(workspace, {"debounceMs": 0})
        try:
            for session in sessions:
                await session.wait_status("ready", timeout=300)
            for round_ in range(1, 4):
                _edit(workspace, rng, round_)
                for path in sorted(workspace.rglob("*.py")):
                    sessions[0].client.text_document_did_save(_saved(path))
                fresh = await asyncio.to_thread(_digest, workspace, tmp_path / f"f{round_}")
                deadline = time.monotonic() + 120
                while (found := await asyncio.to_thread(_digest, workspace)) != fresh:
                    assert time.monotonic() < deadline, _difference(found, fresh)
                    await asyncio.sleep(0.5)
        finally:
            for session in sessions:
                await session.stop()
        assert _digest(workspace) == _digest(workspace, tmp_path / "after")

    asyncio.run(asyncio.wait_for(scenario(), 900))


def _saved(path: Path) -> Any:
    from lsprotocol import types

    return types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(path.as_uri()))


def _difference(found: dict[str, Any], fresh: dict[str, Any]) -> str:
    wrong = sorted(f for f in set(found) | set(fresh) if found.get(f) != fresh.get(f))
    return f"store differs from a fresh index in {len(wrong)} files: {wrong[:5]}"
