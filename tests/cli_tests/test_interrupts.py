"""Ctrl-C and SIGTERM end `codeswift index --watch` and `codeswift serve` in every state.

A background job of a non-interactive shell inherits SIGINT as ignored (`make test &` in a
script, and every process under it): that is how `index --watch` once kept running for an hour
after its test gave up on it. Half of these runs start the child so, on purpose.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli_tests.processes import Codeswift, files_under, wait_until
from tests.conftest import require_real_model

pytestmark = pytest.mark.real_model


def _write_files(folder: Path, count: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        body = "".join(f"    total += {n} * {k}\n" for k in range(12))
        (folder / f"module_{n}.py").write_text(
            f"def compute_{n}(x):\n    total = x\n{body}    return total\n"
        )


def _shards(workspace: Path) -> int:
    """Shard files written so far into `workspace`'s project store (any tokenizer)."""
    from daemon.engine.registry import cache_root

    key = hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:16]
    return sum(files_under(folder, "*.npy") for folder in cache_root().glob(f"projects/{key}-*"))


def _index_count(workspace: Path) -> dict[str, Any]:
    with Codeswift("index", str(workspace), "--json") as run:
        report = run.next_report(lambda r: "files" in r)
        assert run.process.wait(timeout=60) == 0, run.explain("index failed")
    return report


@pytest.mark.parametrize(
    ("moment", "signum", "ignored"),
    [
        ("imports", signal.SIGINT, True),
        ("imports", signal.SIGTERM, False),
        ("initial scan", signal.SIGINT, True),
        ("batch in flight", signal.SIGINT, False),
        ("batch in flight", signal.SIGTERM, True),
        ("idle", signal.SIGINT, True),
        ("idle", signal.SIGTERM, False),
    ],
)
def test_index_watch_stops_at_every_moment(
    tmp_path: Path, moment: str, signum: int, ignored: bool
) -> None:
    require_real_model()
    workspace = tmp_path / "ws"
    _write_files(workspace, 400 if moment == "initial scan" else 3)
    with Codeswift("index", str(workspace), "--watch", "--json", sigint_ignored=ignored) as run:
        if moment == "imports":
            time.sleep(0.6)  # the interpreter is up; torch and transformers are loading
        elif moment == "initial scan":
            wait_until(lambda: _shards(workspace) > 0, 90, "the first shard of the scan")
        else:
            run.next_report(lambda r: r["files"] == 3)
            if moment == "batch in flight":
                _write_files(workspace, 300, start=3)
                wait_until(lambda: _shards(workspace) > 3, 30, "the batch's first shard")
            else:
                time.sleep(1.0)
        took = run.interrupt(signum)
        assert "Traceback" not in "".join(run.stderr), run.explain("a traceback")
    print(f"{moment}: exit {128 + signum} in {took:.2f} s")
    if moment == "initial scan":
        # what the interrupted scan kept is sound, and a rerun completes it
        report = _index_count(workspace)
        assert report["files"] == 400 and report["indexed"] < 400


def _lsp_start(run: Codeswift, workspace: Path) -> None:
    run.send(
        "initialize",
        {
            "processId": None,
            "rootUri": workspace.as_uri(),
            "capabilities": {},
            "workspaceFolders": [{"uri": workspace.as_uri(), "name": "ws"}],
            "initializationOptions": {"maxNewTokens": 512, "timeoutMs": 60000},
        },
    )
    run.next_report(lambda m: "capabilities" in m.get("result", {}))
    run.send("initialized", {}, request=False)


def _status(state: str) -> Any:
    return lambda m: m.get("method") == "codeswift/status" and m["params"]["state"] == state


@pytest.mark.parametrize(
    ("moment", "signum", "ignored"),
    [
        ("imports", signal.SIGINT, True),
        ("model load", signal.SIGTERM, False),
        ("model load", signal.SIGINT, True),
        ("generating", signal.SIGINT, False),
        ("idle", signal.SIGTERM, True),
    ],
)
def test_serve_stops_at_every_moment(
    tmp_path: Path, moment: str, signum: int, ignored: bool
) -> None:
    """The client keeps stdin open all along, as an editor does."""
    require_real_model()
    workspace = tmp_path / "ws"
    _write_files(workspace, 2)
    source = workspace / "module_0.py"
    with Codeswift("serve", sigint_ignored=ignored, stdin=subprocess.PIPE, lsp=True) as run:
        if moment == "imports":
            time.sleep(0.6)
        else:
            _lsp_start(run, workspace)
            run.next_report(_status("loading"))
            if moment != "model load":
                run.next_report(_status("ready"))
            if moment == "generating":
                uri = source.as_uri()
                text = source.read_text() + "\n\ndef "
                item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
                run.send("textDocument/didOpen", {"textDocument": item}, request=False)
                lines = text.split("\n")
                position = {"line": len(lines) - 1, "character": len(lines[-1])}
                run.send(
                    "textDocument/inlineCompletion",
                    {
                        "textDocument": {"uri": uri},
                        "position": position,
                        "context": {"triggerKind": 1},
                    },
                )
                run.next_report(_status("busy"))
        took = run.interrupt(signum)
    print(f"{moment}: exit {128 + signum} in {took:.2f} s")
