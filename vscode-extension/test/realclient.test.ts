// The built bundle with the real vscode-languageclient against the real server (see
// realclient/host.ts). Needs a Python with codeswift installed: $CODESWIFT_PYTHON, else the
// repository's .venv; skipped when there is none (a clean machine with only Node).
import * as assert from "assert";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const root = path.resolve(__dirname, "..", "..");
const python = process.env.CODESWIFT_PYTHON || path.resolve(root, "..", ".venv", "bin", "python");
const available = process.platform !== "win32" && fs.existsSync(python);

(available ? describe : describe.skip)("real language client + real server", function () {
  this.timeout(180_000);
  let result: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  let folder = "";
  after(() => folder && fs.rmSync(folder, { recursive: true, force: true }));

  before(async () => {
    const bundle = path.join(root, "out", "realclient", "extension.js");
    // the same esbuild options as `npm run build`, into out/ so dist/ is left alone
    const { options } = require(path.join(root, "scripts", "build.js"));
    require("esbuild").buildSync(options(bundle));
    folder = fs.mkdtempSync(path.join(os.tmpdir(), "codeswift-ws-"));
    fs.writeFileSync(path.join(folder, "util.py"), "def add(a, b):\n    return a + b\n");
    const host = path.join(__dirname, "realclient", "host.js");
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [host, bundle, python, folder],
        { timeout: 170_000, maxBuffer: 1 << 24 },
        (error, out, err) =>
          error && !out ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      );
    });
    result = JSON.parse(stdout.trim().split("\n").pop()!);
    assert.ok(!result.error, `host failed: ${result.error}\n${(result.log ?? []).join("\n")}`);
  });

  it("the client registers the server's commands and its inline provider", () => {
    assert.ok(result.statusArrived, "no codeswift/status after starting");
    assert.deepStrictEqual(result.serverCommands, [
      "codeswift.accept",
      "codeswift.toggle",
      "codeswift.reindex",
      "codeswift.stats",
    ]);
    assert.strictEqual(result.inlineProviders, 1);
    assert.strictEqual(
      result.completionProviders,
      1,
      "registered, but the middleware answers it empty",
    );
  });

  it("an accepted item's command reaches the server", () => {
    assert.strictEqual(result.stats.accepted, 1);
  });

  it("toggle turns completions off on the server, and the status bar says so", () => {
    assert.match(result.afterToggle, /circle-slash/);
  });

  it("settings changes reach the running server", () => {
    assert.ok(
      result.settingReached,
      `no warning about debounceMs in the log:\n${result.log.join("\n")}`,
    );
  });

  it("restart hands the server's commands to the new client", () => {
    assert.deepStrictEqual(result.afterRestart, [
      "codeswift.accept",
      "codeswift.toggle",
      "codeswift.reindex",
      "codeswift.stats",
    ]);
    assert.strictEqual(result.statsAfterRestart.accepted, 0, "a fresh server");
  });

  it("deactivate unregisters everything", () => {
    assert.deepStrictEqual(result.afterDeactivate, []);
    assert.strictEqual(result.inlineProvidersAfterDeactivate, 0);
    // (a machine without the model set up gets "cannot load model", which is not the point here)
    const errors = result.messages.filter(
      (m: string) => m.startsWith("error") && !m.includes("cannot load model"),
    );
    assert.deepStrictEqual(errors, []);
  });
});
