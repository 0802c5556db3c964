import * as assert from "assert";
import { shellCommand } from "../src/commands";

(process.platform === "win32" ? describe.skip : describe)("setup command line", () => {
  it("leaves plain words alone", () => {
    const line = shellCommand("/venv/bin/python", ["-m", "daemon", "setup"]);
    assert.strictEqual(line, "/venv/bin/python -m daemon setup");
  });

  it("quotes paths with spaces and quotes for a POSIX shell", () => {
    const line = shellCommand("/My Venv/bin/python", ["--model", "it's"]);
    assert.strictEqual(line, `'/My Venv/bin/python' --model 'it'\\''s'`);
  });
});
