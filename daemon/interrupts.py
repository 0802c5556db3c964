"""Stopping on SIGINT and SIGTERM: always heard, always bounded.

Two things made a `codeswift index --watch` ignore Ctrl-C for good:
- A background job of a non-interactive shell (`make test &` in a script, and every process
  started under it) inherits SIGINT as *ignored*, and Python keeps an inherited ignore. A
  long-running command that is told to stop must stop, so the handlers are installed whatever
  the parent left.
- Cleanup can block without end in libraries we do not own (watchdog joins its threads without
  a timeout; pygls waits for its stdin reader; logging waits for a handler lock held by a
  thread stuck on a full pipe). So the first signal also arms a deadline: a process still alive
  `grace_s` later ends there with the signal's exit code. Everything we persist is written to
  a temporary file and renamed, so ending mid-write loses nothing.

SIGINT raises `KeyboardInterrupt` in the main thread as usual; SIGTERM raises `Stopped`, its
subclass, so one `except KeyboardInterrupt` handles both. A signal that lands while the main
thread is importing ends the process at once instead: an exception raised into a module's
initialisation is not always an exception by the time it leaves (inside torch's native set-up it
aborted the process, exit -6; inside a class's `__set_name__` it became a RuntimeError, exit 1),
and nothing has been written that an import could leave half done.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

__all__ = [
    "Stopped",
    "end_now",
    "exit_code",
    "forget_interrupted_exec",
    "handle_stop_signals",
    "received",
]

_GRACE_S = 1.5
_BACKSTOP_S = 2.0
_received: list[int] = []  # signal numbers, in order
_deadline = threading.Event()  # set: the process ends `grace_s` later (see _arm_deadline)
_arming: list[bool] = []  # non-empty once a handler began arming: a plain flag, no lock
_installed = threading.Event()


class Stopped(KeyboardInterrupt):
    """SIGTERM: stop as for Ctrl-C."""


def handle_stop_signals(grace_s: float = _GRACE_S) -> None:
    """Install the handlers (main thread only; a no-op elsewhere, e.g. under a test runner's
    worker thread)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        _arm_deadline(grace_s)
        if _inside_import(frame):
            end_now()
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped

    if not _installed.is_set():
        _installed.set()
        _start_deadline(grace_s)
        _watch_wakeups(grace_s)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def received() -> bool:
    return bool(_received)


def exit_code() -> int:
    """128 + the first stop signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def forget_interrupted_exec() -> None:
    """Clear CPython's mark of an interrupt that escaped an `exec` of a string.

    dataclasses build their methods with `exec`, so Ctrl-C during an import (torch and
    transformers take seconds) usually lands inside one. CPython 3.11 then remembers an
    "unhandled" KeyboardInterrupt and, under `python -m`, kills the process with SIGINT at exit
    whatever `main` returned (exit status -2, not 130). A clean `exec` resets that mark.
    """
    exec("")


def _inside_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def end_now() -> NoReturn:
    """End a process stopped by a signal now, with its exit code: for a server whose threads
    sit in reads on the client's pipe, which no join can end."""
    for stream in (sys.stdout, sys.stderr):  # should a flush block, the deadline still stands
        with contextlib.suppress(Exception):  # a closed or broken pipe
            stream.flush()
    os._exit(exit_code())


def _start_deadline(grace_s: float) -> None:
    """The thread that ends the process `grace_s` after the deadline is armed, started now:
    a handler that started it would take threading's own locks, which the code it interrupted
    may hold (a handler runs between two bytecodes of the main thread, wherever it is)."""

    def wait_then_end() -> None:
        _deadline.wait()
        time.sleep(grace_s)
        os._exit(exit_code())

    threading.Thread(target=wait_then_end, name="stop-deadline", daemon=True).start()


def _watch_wakeups(grace_s: float) -> None:
    """Arm the deadline even when the main thread does not wake.

    Python runs a signal's handler in the main thread, at its next bytecode. The kernel may
    deliver a process's signal to any thread; one that lands on the model thread leaves the main
    thread asleep in the event loop's wait, so the handler, and the deadline it arms, wait for
    the next event from the client: a `serve` told to stop while loading its model kept loading.
    The C-level handler writes each signal's number to the wakeup fd at once, from whatever
    thread; a thread reading it arms the deadline itself.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # required: a signal handler must never block
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            for signum in os.read(read_end, 64):
                if signum in (signal.SIGINT, signal.SIGTERM):
                    if not _received:
                        _received.append(signum)
                    _arm_deadline(grace_s)

    threading.Thread(target=watch, name="stop-signal-watch", daemon=True).start()


def _arm_deadline(grace_s: float) -> None:
    """Arm the deadline: safe inside a handler, even one that interrupted another handler
    (Ctrl-C twice) or the code of a lock we would need, because it takes none of ours."""
    if _arming:
        return
    _arming.append(True)
    # First faulthandler's watchdog: a C thread that needs neither the GIL nor any lock
    # Python code may hold. Should the deadline thread not have ended the process a little
    # after `grace_s` (a thread that keeps the GIL inside one long C call holds it off), the
    # watchdog prints every thread's stack (what held us up) and exits with status 1.
    faulthandler.dump_traceback_later(grace_s + _BACKSTOP_S, exit=True)
    _deadline.set()  # its lock is this event's own: nothing we interrupt holds it
