import * as assert from "assert";
import { TransportKind } from "./fakes/languageclient";
import { fakePython, MODULE_MISSING, skipOnWindows } from "./helpers";
import { diagnose, IMPORT_CHECK, RunResult, Runner, serverOptions } from "../src/server";

const ok: RunResult = { timedOut: false, exitCode: 0, stderr: "" };
const answering =
  (result: RunResult, calls: unknown[][] = []): Runner =>
  async (...args) => {
    calls.push(args);
    return result;
  };

describe("server options", () => {
  it("runs `<python> -m daemon serve` over stdio", () => {
    assert.deepStrictEqual(serverOptions("/venv/bin/python"), {
      command: "/venv/bin/python",
      args: ["-m", "daemon", "serve"],
      transport: TransportKind.stdio,
    });
  });
});

describe("start-failure diagnosis", () => {
  it("imports the server's modules with the interpreter, bounded by 20 s", async () => {
    const calls: unknown[][] = [];
    assert.strictEqual(await diagnose("/venv/bin/python", answering(ok, calls)), undefined);
    assert.deepStrictEqual(calls, [["/venv/bin/python", ["-c", IMPORT_CHECK], 20_000]]);
    assert.strictEqual(IMPORT_CHECK, "import daemon.cli, lsp.server");
  });

  it("no interpreter -> Python not found", async () => {
    const problem = await diagnose(
      "/no/python",
      answering({ ...ok, spawnError: "ENOENT", exitCode: null }),
    );
    assert.strictEqual(problem?.kind, "python-missing");
    assert.strictEqual(
      problem?.message,
      "codeswift: Python not found at /no/python. Set codeswift.pythonPath.",
    );
  });

  it("package missing -> not installed, with the install command", async () => {
    const problem = await diagnose(
      "/usr/bin/python3",
      answering({ ...ok, exitCode: 1, stderr: MODULE_MISSING }),
    );
    assert.strictEqual(problem?.kind, "not-installed");
    assert.match(
      problem!.message,
      /^codeswift is not installed in \/usr\/bin\/python3: pip install -e .* make setup/,
    );
  });

  it("another `daemon` package (python-daemon) -> not installed", async () => {
    const stderr = "ModuleNotFoundError: No module named 'daemon.cli'; 'daemon' is not a package";
    const problem = await diagnose("py", answering({ ...ok, exitCode: 1, stderr }));
    assert.strictEqual(problem?.kind, "not-installed");
  });

  it("a broken dependency -> its error, not 'not installed'", async () => {
    const stderr = "Traceback ...\nModuleNotFoundError: No module named 'lsprotocol'";
    const problem = await diagnose("py", answering({ ...ok, exitCode: 1, stderr }));
    assert.strictEqual(problem?.kind, "broken");
    assert.strictEqual(
      problem?.message,
      "codeswift cannot start with py: ModuleNotFoundError: No module named 'lsprotocol'",
    );
  });

  it("a hung interpreter -> timeout", async () => {
    const problem = await diagnose("py", answering({ ...ok, timedOut: true, exitCode: null }));
    assert.strictEqual(problem?.kind, "timeout");
    assert.match(problem!.message, /within 20 s/);
  });

  describe("with real processes", () => {
    skipOnWindows("a path that does not exist", async () => {
      const problem = await diagnose("/nonexistent/codeswift/python");
      assert.strictEqual(problem?.kind, "python-missing");
    });

    skipOnWindows("a folder instead of an interpreter", async () => {
      assert.strictEqual((await diagnose("/"))?.kind, "python-missing");
    });

    skipOnWindows("an interpreter without the package", async () => {
      const problem = await diagnose(fakePython("python3", 1, MODULE_MISSING));
      assert.strictEqual(problem?.kind, "not-installed");
    });

    skipOnWindows("an interpreter with the package", async () => {
      assert.strictEqual(await diagnose(fakePython("python3", 0)), undefined);
    });

    skipOnWindows("an interpreter that hangs is killed at the bound", async () => {
      const started = Date.now();
      const problem = await diagnose(fakePython("python3", 0, "", 5), undefined, 300);
      assert.strictEqual(problem?.kind, "timeout");
      assert.ok(Date.now() - started < 3000);
    });
  });
});
