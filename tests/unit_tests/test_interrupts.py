"""The stop deadline holds when the kernel hands the signal to a thread other than the main one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

# The main thread blocks the stop signals and sleeps in a wait nothing will end, as the event loop
# of `serve` does between client messages; so the kernel must deliver SIGTERM to the other thread,
# and Python's own handler never runs.
_CHILD = textwrap.dedent(
    """
    import select, os, signal, sys, threading, time
    from daemon import interrupts

    interrupts.handle_stop_signals(grace_s=0.5)
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    read_end, _ = os.pipe()
    print("waiting", flush=True)
    while True:
        try:
            select.select([read_end], [], [])
        except KeyboardInterrupt:
            pass  # the signal came before the wait: only the deadline may end this process
    """
)


def test_a_signal_taken_by_another_thread_still_ends_the_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "waiting\n", child.stderr
        time.sleep(0.3)  # into the wait
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        child.kill()
        child.wait()
    assert code == 128 + signal.SIGTERM, child.stderr.read() if child.stderr else code
    assert took < 5, took
