"""A `codeswift` subprocess a test can read report by report, interrupt, and never leak.

Both pipes are drained on threads (an undrained stderr pipe fills and blocks the child), and
every failure message carries the child's stderr and the last report it printed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.conftest import REPO

__all__ = ["Codeswift", "files_under", "wait_until"]

# Loaded 2-core machines take seconds to import torch and transformers: waits are generous,
# and the time a shutdown took is in the message when it is too long.
REPORT_WAIT_S = 90.0
EXIT_BUDGET_S = 6.0


class Codeswift:
    """`python -m daemon ARGS` with its stdout read as JSON lines (or, `lsp`, LSP messages)."""

    def __init__(
        self,
        *args: str,
        sigint_ignored: bool = False,
        stdin: int | None = subprocess.DEVNULL,
        lsp: bool = False,
    ) -> None:
        command: Sequence[str] = [sys.executable, "-m", "daemon", *args]
        if sigint_ignored:
            # what a background job of a non-interactive shell inherits (`make test &`)
            command = ["bash", "-c", 'trap "" INT; exec "$0" "$@"', *command]
        self.process = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            start_new_session=True,  # its own process group: killed whole, never left behind
        )
        self.started = time.monotonic()
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.last_report: dict[str, Any] | None = None
        self._ids = iter(range(1, 1 << 30))
        if lsp:
            threading.Thread(target=self._read_frames, daemon=True).start()
        else:
            self._drain(self.process.stdout, self.lines.put)
        self._drain(self.process.stderr, self.stderr.append)

    @staticmethod
    def _drain(stream: Any, put: Callable[[str], None]) -> None:
        def run() -> None:
            for raw in stream:
                put(raw.decode("utf-8", "replace"))

        threading.Thread(target=run, daemon=True).start()

    # -- the language server's side: LSP frames instead of lines ----------------------------

    def _read_frames(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while (header := stream.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if header == b"" or length is None:
                return
            self.lines.put(stream.read(length).decode())

    def send(self, method: str, params: Any, request: bool = True) -> int | None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        ident = next(self._ids) if request else None
        if ident is not None:
            message["id"] = ident
        body = json.dumps(message).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        self.process.stdin.flush()
        return ident

    def explain(self, what: str) -> str:
        tail = "".join(self.stderr)[-4000:]
        return f"{what}\nlast report: {self.last_report}\nstderr:\n{tail}"

    def next_report(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = REPORT_WAIT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            try:
                report: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # not a report
            self.last_report = report
            if predicate(report):
                return report
        raise AssertionError(self.explain(f"no matching report within {timeout:.0f} s"))

    def interrupt(self, signum: int = signal.SIGINT, budget: float = EXIT_BUDGET_S) -> float:
        """Send `signum`, require the exit code 128 + signum, return the seconds it took."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                self.explain(f"still running {budget:.0f} s after signal {signum}")
            ) from None
        took = time.monotonic() - sent
        assert code == 128 + signum, self.explain(f"exit code {code} after signal {signum}")
        return took

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> Codeswift:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def files_under(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0
