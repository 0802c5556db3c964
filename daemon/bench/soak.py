"""`codeswift bench --suite soak`: the real server driven for a long time, as a day of editing
drives it, to show that it can run for days.

`codeswift serve` runs as a subprocess behind a pygls client. An editing script works on a
copy of a workspace: it opens files, types lines key by key asking for a completion after each
key, cancels some requests at once, saves, creates and deletes files, closes documents and
changes settings. It reports completions answered, errors (any answer but a completion or a
cancellation), latency p50/p95 per window of time, the server's resident memory and thread
count over the run, and at the end whether the project store on disk equals a fresh index of
the final files.

The targets: no errors; the last window's p50 and p95 within 20% of the first's; memory after
the first window (warm-up) grows by at most 10%; the thread count stays put; the store is equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

import indexer
from daemon.bench.latency import inline_params, json_field, latency_summary
from daemon.errors import UsageError

__all__ = ["run_soak_bench"]

_MAX_FILES = 40
_CANCELLED = -32800
_SETTINGS = (
    {"maxNewTokens": 24, "multiline": "auto"},
    {"maxNewTokens": 32, "multiline": "never"},
    {"maxNewTokens": 48, "multiline": "auto"},
)


def run_soak_bench(model: str, workspace: Path | None, minutes: float, seed: int) -> dict[str, Any]:
    source = workspace or Path(indexer.__file__).resolve().parent
    files = sorted(p for p in source.rglob("*.py") if p.stat().st_size > 300)[:_MAX_FILES]
    if not files:
        raise UsageError(f"--suite soak needs Python files in {source}")
    with tempfile.TemporaryDirectory(prefix="codeswift-soak-") as scratch:
        folder = Path(scratch) / "workspace"
        for path in files:  # the soak edits, creates and deletes: never the user's own files
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        soak = _Soak(folder, minutes * 60, random.Random(seed))
        report = asyncio.run(soak.run(model))
        report["store_equals_fresh_index"] = _store_equals_fresh_index(model, folder)
    # a path the user gave, or a name for the default: no machine's path in a shared report
    report["source"] = str(workspace) if workspace else "codeswift's own indexer/ sources"
    report["checks"] = _checks(report)
    return report


@dataclass
class _Document:
    uri: str
    path: Path
    lines: list[str]
    version: int = 1
    dirty: bool = False


@dataclass
class _Figures:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (seconds in, ms)
    errors: list[str] = field(default_factory=list)
    cancelled: int = 0
    saves: int = 0
    created: int = 0
    deleted: int = 0
    settings_changes: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)  # at_s, rss_mb, threads


class _Soak:
    def __init__(self, folder: Path, seconds: float, rng: random.Random) -> None:
        self.folder, self.seconds, self.rng = folder, seconds, rng
        self.client = LanguageClient("codeswift-soak", "0")
        self.open: dict[Path, _Document] = {}
        self.figures = _Figures()
        self.started = 0.0
        self.pid = 0

    async def run(self, model: str) -> dict[str, Any]:
        ready = asyncio.Event()

        @self.client.feature("codeswift/status")
        def status(ls: LanguageClient, params: Any) -> None:
            if json_field(params, "state") == "ready":
                ready.set()

        await self.client.start_io(sys.executable, "-m", "daemon", "serve", "--model", model)
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                workspace_folders=[types.WorkspaceFolder(self.folder.as_uri(), "soak")],
                initialization_options={"debounceMs": 0, "timeoutMs": 10000, **_SETTINGS[0]},
            )
        )
        self.client.initialized(types.InitializedParams())
        await asyncio.wait_for(ready.wait(), 600)
        stats = await self._stats()
        self.pid = int(json_field(json_field(stats, "backend"), "pid"))
        self.started = time.monotonic()
        try:
            await self._edit_until_done()
            await self._save_and_close_all()
            await self._settle()
        finally:
            await self.client.shutdown_async(None)
            self.client.exit(None)
            await self.client.stop()
        return self._report()

    # -- the editing script -----------------------------------------------------------------

    async def _edit_until_done(self) -> None:
        next_sample = 0.0
        while (elapsed := time.monotonic() - self.started) < self.seconds:
            if elapsed >= next_sample:
                self._sample(elapsed)
                next_sample = elapsed + 30
            roll = self.rng.random()
            if roll < 0.75:
                await self._type_a_line()
            elif roll < 0.85:
                self._save(self._a_document())
            elif roll < 0.89:
                self._create()
            elif roll < 0.92:
                self._delete()
            elif roll < 0.97:
                self._close(self.rng.choice(list(self.open)) if self.open else None)
            else:
                self._change_settings()
            await asyncio.sleep(self.rng.uniform(0.02, 0.2))
        self._sample(time.monotonic() - self.started)

    def _a_document(self) -> _Document:
        if self.open and (len(self.open) >= 4 or self.rng.random() < 0.8):
            return self.open[self.rng.choice(list(self.open))]
        closed = [p for p in sorted(self.folder.rglob("*.py")) if p not in self.open]
        path = self.rng.choice(closed) if closed else self._create()
        lines = path.read_text(encoding="utf-8").split("\n")
        document = self.open[path] = _Document(path.as_uri(), path, lines)
        item = types.TextDocumentItem(document.uri, "python", 1, "\n".join(lines))
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        return document

    async def _type_a_line(self) -> None:
        """Insert a copy of one of the file's indented lines after it, key by key."""
        document = self._a_document()
        rows = [i for i, line in enumerate(document.lines) if line.startswith("    ")]
        if not rows:
            return
        row = self.rng.choice(rows)
        target = document.lines[row]
        indent = len(target) - len(target.lstrip())
        document.lines.insert(row + 1, target[:indent])
        for column in range(indent + 1, min(len(target), indent + 12) + 1):
            document.lines[row + 1] = target[:column]
            self._sync(document)
            await self._ask(document, row + 1, cancel=self.rng.random() < 0.1)
        document.lines[row + 1] = target

    async def _ask(self, document: _Document, row: int, cancel: bool) -> None:
        line = document.lines[row]
        position = types.Position(row, len(line.encode("utf-16-le")) // 2)
        msg_id = f"soak-{time.monotonic_ns()}"
        future = self.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            inline_params(document.uri, position),
            msg_id=msg_id,
        )
        if cancel:
            await asyncio.sleep(self.rng.uniform(0.0, 0.05))
            self.client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
        asked = time.perf_counter()
        try:
            await asyncio.wait_for(future, 60)
        except JsonRpcException as exc:
            if getattr(exc, "code", None) == _CANCELLED:
                self.figures.cancelled += 1
                return
            self.figures.errors.append(f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # a timeout or a broken connection: the run's verdict
            self.figures.errors.append(f"{type(exc).__name__}: {exc}")
            return
        latency = (time.perf_counter() - asked) * 1000
        self.figures.latencies.append((time.monotonic() - self.started, latency))

    def _sync(self, document: _Document) -> None:
        document.version += 1
        document.dirty = True
        change = types.TextDocumentContentChangeWholeDocument("\n".join(document.lines))
        identifier = types.VersionedTextDocumentIdentifier(document.version, document.uri)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(identifier, [change])
        )

    def _save(self, document: _Document) -> None:
        document.path.write_text("\n".join(document.lines), encoding="utf-8")
        document.dirty = False
        self.client.text_document_did_save(
            types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(document.uri))
        )
        self.figures.saves += 1

    def _create(self) -> Path:
        number = self.figures.created
        path = self.folder / "new" / f"added_{number}.py"
        path.parent.mkdir(exist_ok=True)
        body = "".join(f"    total += value * {k}\n" for k in range(self.rng.randint(2, 12)))
        path.write_text(f"def added_{number}(value):\n    total = 0\n{body}    return total\n")
        self.figures.created += 1
        return path

    def _delete(self) -> None:
        files = sorted(self.folder.rglob("*.py"))
        if len(files) <= 4:
            return
        path = self.rng.choice(files)
        if path in self.open:
            self._close(path)
        path.unlink()
        self.figures.deleted += 1

    def _close(self, path: Path | None) -> None:
        """Close a document, its unsaved edits discarded (the file on disk is the truth)."""
        if path is None:
            return
        document = self.open.pop(path)
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(document.uri))
        )

    def _change_settings(self) -> None:
        settings = self.rng.choice(_SETTINGS)
        self.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams({"codeswift": settings})
        )
        self.figures.settings_changes += 1

    async def _save_and_close_all(self) -> None:
        for path in list(self.open):
            self._save(self.open[path])
            self._close(path)

    async def _settle(self, timeout: float = 120) -> None:
        """Wait until the server's indexer has taken in every change (no new batch for 2 s)."""
        deadline = time.monotonic() + timeout
        last, quiet_since = None, time.monotonic()
        while time.monotonic() < deadline:
            index = json_field(json_field(await self._stats(), "backend"), "index")
            seen = (json_field(index, "events"), json_field(index, "batches"))
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since > 2:
                return
            await asyncio.sleep(0.25)

    async def _stats(self) -> Any:
        params = types.ExecuteCommandParams("codeswift.stats")
        return await self.client.workspace_execute_command_async(params)

    # -- figures ----------------------------------------------------------------------------

    def _sample(self, at_s: float) -> None:
        status = _proc_status(self.pid)
        self.figures.samples.append({"at_s": round(at_s, 1), **status})

    def _report(self) -> dict[str, Any]:
        figures = self.figures
        window_s = 300.0 if self.seconds >= 900 else self.seconds / 3
        windows = []
        start = 0.0
        while start < self.seconds:
            inside = [ms for at, ms in figures.latencies if start <= at < start + window_s]
            windows.append({"from_min": round(start / 60, 1), **latency_summary(inside)})
            start += window_s
        warm = [s for s in figures.samples if s["at_s"] >= window_s] or figures.samples
        return {
            "suite": "soak",
            "minutes": round(self.seconds / 60, 1),
            "completions_answered": len(figures.latencies),
            "cancelled": figures.cancelled,
            "errors": len(figures.errors),
            "error_examples": figures.errors[:5],
            "saves": figures.saves,
            "files_created": figures.created,
            "files_deleted": figures.deleted,
            "settings_changes": figures.settings_changes,
            "latency_ms": latency_summary([ms for _, ms in figures.latencies]),
            "windows": windows,
            "rss_mb": {
                "start": figures.samples[0]["rss_mb"],
                "after_warm_up": warm[0]["rss_mb"],
                "end": figures.samples[-1]["rss_mb"],
            },
            "threads": sorted({int(s["threads"]) for s in warm}),  # after warm-up
            "threads_from_start": sorted({int(s["threads"]) for s in figures.samples}),
            "samples": figures.samples,
        }


def _proc_status(pid: int) -> dict[str, Any]:
    """Resident memory (MB), OS threads and their names, of a process, from /proc (Linux)."""
    fields: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        names = Counter(
            (task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()
        )
        fields["thread_names"] = dict(sorted(names.items()))
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "VmRSS":
                fields["rss_mb"] = round(int(value.split()[0]) / 1024, 1)
            elif name == "Threads":
                fields["threads"] = int(value)
    return fields


def _store_equals_fresh_index(model: str, folder: Path) -> bool:
    """Compare the server's store with a fresh index, then delete it (the workspace was a
    scratch copy)."""
    from daemon.assembly import open_project, scan_project
    from daemon.engine.models import load_tokenizer
    from daemon.engine.project_shards import ProjectShards

    tokenizer = load_tokenizer(model)
    served = ProjectShards(folder, tokenizer)
    with tempfile.TemporaryDirectory(prefix="codeswift-fresh-") as fresh:
        expected = open_project(folder, tokenizer, folder=Path(fresh))
        scan_project(expected)
        equal = served.digest() == expected.shards.digest()
    shutil.rmtree(served.folder, ignore_errors=True)
    return equal


def _checks(report: dict[str, Any]) -> dict[str, bool]:
    first, last = report["windows"][0], report["windows"][-1]
    rss = report["rss_mb"]
    return {
        "no_errors": report["errors"] == 0,
        "p50_drift_within_20%": last["p50"] <= 1.2 * first["p50"],
        "p95_drift_within_20%": last["p95"] <= 1.2 * first["p95"],
        "rss_growth_within_10%": rss["end"] <= 1.1 * rss["after_warm_up"],
        "threads_constant": len(report["threads"]) == 1,
        "store_equals_fresh_index": report["store_equals_fresh_index"],
    }
