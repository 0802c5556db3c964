"""The stop deadline holds when the kernel hands the signal to a thread other than the main one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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


# A class attribute's `__set_name__` runs inside the import that defines the class; CPython wraps
# an exception raised there in a RuntimeError (huggingface_hub's dataclasses did this when Ctrl-C
# came during `import transformers`: exit 1 and a traceback instead of 130).
_IMPORTER = textwrap.dedent(
    """
    import sys, time
    from daemon import interrupts

    interrupts.handle_stop_signals(grace_s=5.0)
    sys.path.insert(0, sys.argv[1])
    try:
        import slow_module
    except KeyboardInterrupt:
        sys.exit(interrupts.exit_code())
    """
)
_SLOW_MODULE = textwrap.dedent(
    """
    import time

    class Field:
        def __set_name__(self, owner, name):
            print("importing", flush=True)
            time.sleep(30)

    class Record:
        name = Field()
    """
)


def test_a_signal_during_an_import_ends_the_process_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "slow_module.py").write_text(_SLOW_MODULE)
    child = subprocess.Popen(
        [sys.executable, "-c", _IMPORTER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "importing\n", child.stderr
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=4)  # well inside the 5 s deadline: the handler itself ended it
    finally:
        child.kill()
        child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    assert code == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr, stderr
