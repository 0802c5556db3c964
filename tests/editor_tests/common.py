"""What the real-editor tests share: the file they type into, and bounded waits and kills."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

__all__ = ["SOURCE", "TARGET_LINE", "TYPED", "kill_group", "wait_for"]

SOURCE = "\n".join(
    [
        '"""Small arithmetic helpers."""',
        "",
        "",
        "def subtract(a, b):",
        "    return a - b",
        "",
        "",
        "def multiply(a, b):",
        "    return a * b",
        "",
        "",
        "def add(a, b):",
        "    ",  # the cursor goes here; the model is expected to write `return a + b`
        "",
    ]
)
# 1-based line of the empty `    ` body of add(), and what the tests type there.
TARGET_LINE = SOURCE.splitlines().index("    ") + 1
TYPED = "ret"


def wait_for(check: Callable[[], object], timeout_s: float, interval_s: float = 0.25) -> object:
    """Poll `check` until it returns something true or `timeout_s` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


def kill_group(pgid: int, grace_s: float = 5.0) -> None:
    """SIGTERM a process group, then SIGKILL what is left after `grace_s`. A group outlives its
    leader, so this also reaches a language server that an editor left behind."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)
