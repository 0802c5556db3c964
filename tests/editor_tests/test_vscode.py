"""The VS Code extension (vscode-extension/) in real VS Code, against the real server and model.

VS Code is code-server (VS Code 1.139 from npm, with a Node extension host that spawns the
Python server) shown in headless Chromium, which puppeteer-core drives as a person would:
Ctrl+P opens the file, Ctrl+G goes to a line, keys are typed, the inline suggestion (ghost text)
is waited for, Tab accepts it and Ctrl+S saves. The file on disk must then hold the suggestion.

What it needs is installed by vscode-extension/e2e/install.sh (pinned, idempotent, into a cache
folder outside the repository: CODESWIFT_E2E_CACHE, default ~/.cache/codeswift-e2e): Debian's
chromium and libkrb5-dev, Node 24 and code-server from npm, and the driver's puppeteer-core. The
.vsix is built here when it is missing or older than the extension's sources (CODESWIFT_VSIX
names a prebuilt one instead).

Typing asks for a suggestion, but the model is still loading then (10-20 s on CPU), and that
request gets nothing; VS Code does not ask again by itself. So the driver, as a person would,
retypes the last character once the extension's status item shows the server idle with no
ghost text (and every 30 s in any case), within FIRST_COMPLETION_S.

code-server gets a throwaway user-data-dir, extensions-dir and XDG config folders in tmp_path.
Every wait is bounded; code-server, the driver and Chromium are killed in `finally`. The logs,
the driver's result.json and the screenshots stay in tmp_path (and are copied to
$CODESWIFT_E2E_ARTIFACTS when it is set).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import REPO, require_real_model
from tests.editor_tests.common import SOURCE, TARGET_LINE, TYPED
from tests.editor_tests.common import kill_group as _kill_group
from tests.editor_tests.common import wait_for as _wait_for

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

EXTENSION = REPO / "vscode-extension"
E2E = EXTENSION / "e2e"
EXTENSION_ID = "codeswift.codeswift"

INSTALL_TIMEOUT_S = 900  # first run ~4 min (code-server builds native modules), then ~1 s
BUILD_TIMEOUT_S = 300
SERVER_START_S = 60
# The first completion loads the model on CPU; later ones take well under this.
FIRST_COMPLETION_S = 120
DRIVER_TIMEOUT_S = FIRST_COMPLETION_S + 150


# Settings for a quiet, predictable workbench: no welcome page, trust prompt, tips, chat or
# update checks; no word-based suggest widget, which would take the Tab meant for the ghost text.
WORKBENCH_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "security.workspace.trust.enabled": False,
    "extensions.ignoreRecommendations": True,
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "update.mode": "none",
    "update.showReleaseNotes": False,
    "telemetry.telemetryLevel": "off",
    "chat.disableAIFeatures": True,
    "git.enabled": False,
    "editor.inlineSuggest.enabled": True,
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.wordBasedSuggestions": "off",
    "editor.suggestOnTriggerCharacters": False,
    "editor.acceptSuggestionOnEnter": "off",
    "editor.minimap.enabled": False,
    "files.autoSave": "off",
    "files.trimTrailingWhitespace": False,
    "files.insertFinalNewline": False,
}


def _log(message: str) -> None:
    print(f"[vscode-e2e] {message}", flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _install(tmp_path: Path) -> dict[str, str]:
    """Runs e2e/install.sh (a no-op when everything is there) and returns the paths it prints."""
    started = time.monotonic()
    log = tmp_path / "install.log"
    with log.open("w") as sink:
        try:
            done = subprocess.run(
                ["bash", str(E2E / "install.sh")],
                stdout=subprocess.PIPE,
                stderr=sink,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"install.sh ran past {INSTALL_TIMEOUT_S} s; see {log}")
    _log(f"install.sh: {time.monotonic() - started:.1f} s\n{log.read_text()}")
    if done.returncode != 0:
        pytest.fail(f"install.sh failed ({done.returncode}):\n{log.read_text()[-4000:]}")
    paths: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    for name, path in paths.items():
        assert Path(path).exists(), f"install.sh reported {name}={path}, which is missing"
    return paths


def _newest_source_mtime() -> float:
    """The newest of what goes into the .vsix: top-level files (the manifest, lock file,
    .vscodeignore, README, ...) and those under src/ and scripts/."""
    files = [p for p in EXTENSION.iterdir() if p.is_file() and p.suffix != ".vsix"]
    for folder in ("src", "scripts"):
        files += [p for p in (EXTENSION / folder).rglob("*") if p.is_file()]
    return max(p.stat().st_mtime for p in files if p.exists())


def _vsix(tmp_path: Path) -> Path:
    """The extension's .vsix: CODESWIFT_VSIX, or built with `npm ci && npm run package`."""
    if os.environ.get("CODESWIFT_VSIX"):
        vsix = Path(os.environ["CODESWIFT_VSIX"])
        assert vsix.is_file(), f"CODESWIFT_VSIX={vsix} is not a file"
        return vsix
    manifest = EXTENSION / "package.json"
    if not manifest.exists():
        pytest.fail(f"{manifest} is missing: the extension is not in the repository")
    meta = json.loads(manifest.read_text())
    vsix = EXTENSION / f"{meta['name']}-{meta['version']}.vsix"
    if vsix.exists() and vsix.stat().st_mtime >= _newest_source_mtime():
        return vsix
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: it builds the extension")
    started = time.monotonic()
    log = tmp_path / "build.log"
    installed = EXTENSION / "node_modules" / ".package-lock.json"
    steps = [["npm", "run", "package"]]
    lock = EXTENSION / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        steps.insert(0, ["npm", "ci", "--no-audit", "--no-fund"])
    with log.open("w") as sink:
        for step in steps:
            try:
                done = subprocess.run(
                    step,
                    cwd=EXTENSION,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=BUILD_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"{' '.join(step)} ran past {BUILD_TIMEOUT_S} s; see {log}")
            if done.returncode != 0:
                pytest.fail(f"{' '.join(step)} failed:\n{log.read_text()[-4000:]}")
    _log(f"built {vsix.name}: {time.monotonic() - started:.1f} s")
    assert vsix.is_file(), f"`npm run package` did not produce {vsix}"
    return vsix


def _env(tmp_path: Path, paths: dict[str, str]) -> dict[str, str]:
    """Node 24 first on PATH (code-server's scripts run `env node`); private XDG config and data
    folders so nothing of the user's code-server setup takes part; the model cache pinned.
    """
    from daemon.engine.registry import cache_root

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VSCODE_", "CODE_SERVER"))}
    env["PATH"] = f"{Path(paths['node']).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CODESWIFT_CACHE_DIR"] = str(cache_root())
    for name in ("CONFIG", "DATA"):
        folder = tmp_path / "xdg" / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[f"XDG_{name}_HOME"] = str(folder)
    env.pop("NODE_OPTIONS", None)
    # No extension gallery (code-server's default is open-vsx.org, unreachable and not needed).
    env["EXTENSIONS_GALLERY"] = "{}"
    return env


def _extension_settings() -> dict[str, object]:
    return {
        # The project's own interpreter, so `python -m daemon serve` runs this checkout.
        "codeswift.pythonPath": sys.executable,
        "codeswift.debounceMs": 75,
        "codeswift.maxNewTokens": 48,
        "codeswift.logLevel": "debug",  # the server's timing of each request, in its log
    }


def _write_settings(user_data: Path) -> None:
    """User settings, plus the extension's in the Machine (remote) settings too.

    In code-server the extension host is remote: a setting of scope `machine` or
    `machine-overridable`, such as codeswift.pythonPath, is read from the Machine settings and
    ignored in the User ones, as in any VS Code remote window.
    """
    user = {**WORKBENCH_SETTINGS, **_extension_settings()}
    for scope, settings in (("User", user), ("Machine", _extension_settings())):
        (user_data / scope).mkdir(parents=True, exist_ok=True)
        (user_data / scope / "settings.json").write_text(json.dumps(settings, indent=2))


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "pyproject.toml").write_text('[project]\nname = "calc"\nversion = "0"\n')
    (ws / "calc.py").write_text(SOURCE)
    return ws


def _pid_alive(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _extension_logs(user_data: Path) -> str:
    """The tail of every log file code-server wrote for the codeswift extension."""
    parts = []
    for path in sorted((user_data / "logs").rglob("*")):
        if path.is_file() and "codeswift" in path.name.lower():
            parts.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def _server_timings(user_data: Path) -> list[str]:
    """The server's debug lines on its generations and answers, oldest first."""
    lines = []
    for path in sorted((user_data / "logs").rglob("*")):
        if path.is_file() and "codeswift" in path.name.lower():
            text = path.read_text(errors="replace")
            lines += [
                line for line in text.splitlines() if re.search(r"generation: | answered ", line)
            ]
    return lines


def _keep_artifacts(tmp_path: Path, names: list[str]) -> None:
    target = os.environ.get("CODESWIFT_E2E_ARTIFACTS")
    if not target:
        return
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (tmp_path / name).is_file():
            shutil.copy2(tmp_path / name, folder / f"vscode-{name}")


class _Processes:
    """code-server, the driver and Chromium, all stopped in `stop()`.

    Each leads a process group of its own (code-server's holds the extension host and the
    language server; puppeteer starts Chromium detached). Every process also carries a marker in
    its environment, so anything that left its group is found in /proc and killed as well.
    """

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.marker = f"codeswift-vscode-e2e-{uuid.uuid4().hex}"
        self.env = {**env, "CODESWIFT_E2E_MARKER": self.marker}
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(self, cmd: list[str], log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.tmp_path,
                env={**self.env, **extra_env},
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def start_code_server(self, code_server: str, args: list[str]) -> str:
        """Starts code-server on a free loopback port; returns its URL once /healthz answers."""
        log = self.tmp_path / "code-server.log"
        for _attempt in range(3):  # a port found free may be taken before code-server binds it
            url = f"http://127.0.0.1:{_free_port()}"
            bind = ["--auth", "none", "--bind-addr", url.removeprefix("http://")]
            proc = self.spawn([code_server, *bind, *args], log)

            def ready(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool:
                return proc.poll() is not None or _healthy(url)

            up = _wait_for(ready, SERVER_START_S)
            if up and proc.poll() is None:
                return url
            _kill_group(proc.pid)
            if "EADDRINUSE" not in log.read_text(errors="replace"):
                break
        pytest.fail(f"code-server did not start:\n{log.read_text(errors='replace')[-4000:]}")

    def stop(self, chromium_pid_file: Path) -> None:
        if chromium_pid_file.exists():
            pid = int(chromium_pid_file.read_text())
            if _pid_alive(pid, "chrom"):
                _kill_group(pid)
        for proc in reversed(self.started):
            _kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        _kill_marked(self.marker)


def _kill_marked(marker: str) -> None:
    """SIGKILLs every process whose environment holds `marker` (those that left their group)."""
    needle = marker.encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes():
                os.kill(int(environ.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _install_extension(code_server: str, dirs: list[str], vsix: Path, env: dict[str, str]) -> None:
    installed = subprocess.run(
        [code_server, *dirs, "--install-extension", str(vsix)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    extensions = Path(dirs[dirs.index("--extensions-dir") + 1])
    why = installed.stdout + installed.stderr
    assert installed.returncode == 0, why
    assert list(extensions.glob(f"{EXTENSION_ID}-*")), why


def _driver_config(tmp_path: Path, url: str, ws: Path, file: Path, chromium: str) -> Path:
    config = tmp_path / "driver-config.json"
    config.write_text(
        json.dumps(
            {
                "url": f"{url}/?folder={quote(str(ws))}",
                "chromium": chromium,
                "outDir": str(tmp_path / "driver"),
                "fileName": file.name,
                "line": TARGET_LINE,
                "typed": TYPED,
                "workbenchTimeoutMs": 60_000,
                "ghostTimeoutMs": FIRST_COMPLETION_S * 1000,
                # Typing asks once. A request made while the model loads, or one whose first
                # (cold) generation runs out of time, gets nothing and VS Code does not ask again:
                # the driver retypes the last character once the server sits idle with nothing
                # shown, and every 30 s whatever the status item says.
                "idleRetypeMs": 2_500,
                "retriggerEveryMs": 30_000,
                "totalTimeoutMs": (DRIVER_TIMEOUT_S - 20) * 1000,
            }
        )
    )
    return config


def test_vscode_ghost_text_and_tab_accept(tmp_path: Path) -> None:
    require_real_model()
    timings: dict[str, float] = {}
    t = time.monotonic()
    paths = _install(tmp_path)
    timings["install_s"] = time.monotonic() - t
    t = time.monotonic()
    vsix = _vsix(tmp_path)
    timings["vsix_s"] = time.monotonic() - t
    env = _env(tmp_path, paths)

    user_data = tmp_path / "user-data"
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(tmp_path / "extensions")]
    t = time.monotonic()
    _install_extension(paths["code_server"], dirs, vsix, env)
    timings["install_extension_s"] = time.monotonic() - t
    _write_settings(user_data)

    ws = _workspace(tmp_path)
    file = ws / "calc.py"
    out = tmp_path / "driver"
    out.mkdir()
    driver_log = tmp_path / "driver.log"
    procs = _Processes(tmp_path, env)
    result: dict[str, Any] = {}
    try:
        t = time.monotonic()
        args = [
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            *dirs,
            str(ws),
        ]
        url = procs.start_code_server(paths["code_server"], args)
        timings["code_server_start_s"] = time.monotonic() - t

        t = time.monotonic()
        config = _driver_config(tmp_path, url, ws, file, paths["chromium"])
        driver = procs.spawn(
            [paths["node"], str(E2E / "driver.js"), str(config)],
            driver_log,
            NODE_PATH=paths["node_path"],
        )
        try:
            driver.wait(timeout=DRIVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver ran past {DRIVER_TIMEOUT_S} s:\n{driver_log.read_text()}")
        timings["driver_s"] = time.monotonic() - t
        result_file = out / "result.json"
        assert result_file.exists(), f"the driver wrote no result:\n{driver_log.read_text()}"
        result = json.loads(result_file.read_text())
    finally:
        procs.stop(out / "chromium.pid")
        for shot in out.glob("*.png"):
            shutil.copy2(shot, tmp_path / shot.name)
        (tmp_path / "timings.json").write_text(json.dumps(timings, indent=2))
        _keep_artifacts(
            tmp_path,
            [
                "ghost.png",
                "accepted.png",
                "keystroke.png",
                "failure.png",
                "code-server.log",
                "driver.log",
            ],
        )
        _log(f"timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
        _log(f"artifacts in {tmp_path}")

    why = (
        f"{json.dumps(result, indent=2)}\n{driver_log.read_text()[-3000:]}\n"
        f"{_extension_logs(user_data)}"
    )
    assert not result.get("error"), why
    assert result.get("done"), why
    ghost = str(result["ghostText"])
    assert ghost.strip(), why
    _log(f"ghost text after {result['ghostMs'] / 1000:.1f} s: {ghost!r}")

    # Tab put the suggestion into the buffer, and Ctrl+S saved it.
    lines = file.read_text().splitlines()
    before = SOURCE.splitlines()
    assert lines[: TARGET_LINE - 1] == before[: TARGET_LINE - 1], "lines above the cursor changed"
    accepted = lines[TARGET_LINE - 1]
    typed_line = "    " + TYPED
    assert accepted.startswith(typed_line), accepted
    assert len(accepted.rstrip()) > len(typed_line), f"nothing accepted: {accepted!r}"
    first = ghost.splitlines()[0].strip()
    assert first in accepted, f"the line on disk {accepted!r} lacks the ghost text {first!r}"
    _log(f"accepted: {accepted!r}")

    # The extension's status bar item is there and names itself.
    items = result["statusItems"]
    assert any("codeswift" in f"{i['text']} {i['label']}".lower() for i in items), items
    assert (tmp_path / "ghost.png").is_file()
    assert (tmp_path / "accepted.png").is_file()

    # With the model loaded: one key typed, and the time until its ghost text was visible
    # (a figure for the log, not a timed assertion: speed is the benchmark's business).
    keystroke = result.get("keystrokeGhostMs")
    assert keystroke is not None, why
    assert str(result["keystrokeGhostText"]).strip()
    _log(f"keystroke to visible ghost text: {keystroke} ms ({result['keystrokeGhostText']!r})")
    for line in _server_timings(user_data)[-4:]:  # the keystroke's request is the last
        _log(f"server: {line}")
