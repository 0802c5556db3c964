// The extension against the server's source in this repository (lsp/), so the two cannot drift
// apart silently. Skipped when the extension is built outside the repository.
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import { SERVER_COMMANDS } from "../src/ids";
import { DEFAULTS, serverSettings } from "../src/settings";
import { STATUS_METHOD } from "../src/status";

const lsp = path.resolve(__dirname, "..", "..", "..", "lsp");
const present = fs.existsSync(path.join(lsp, "settings.py"));
const suite = present ? describe : describe.skip;

/** `Settings` fields of lsp/settings.py as camelCase name -> default (Python literal). */
function serverFields(): Map<string, string> {
  const source = fs.readFileSync(path.join(lsp, "settings.py"), "utf8");
  const body = source.split("class Settings:")[1].split("\n    def ")[0];
  const fields = new Map<string, string>();
  for (const match of body.matchAll(/^    (\w+): [^=\n]+= ([^#\n]+?)\s*(#.*)?$/gm)) {
    const camel = match[1].replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    fields.set(camel, match[2]);
  }
  return fields;
}

/** A Python literal as JSON (enough for bools, numbers with `_`, strings and `()`). */
function fromPython(literal: string): unknown {
  if (literal === "()") return [];
  if (literal === "True" || literal === "False") return literal === "True";
  if (/^[\d_]+$/.test(literal)) return Number(literal.replace(/_/g, ""));
  return JSON.parse(literal);
}

suite("server contract (lsp/)", () => {
  it("every setting sent is a server setting, with the server's default", () => {
    const fields = serverFields();
    assert.ok(fields.size > 10, "could not read lsp/settings.py");
    const sent = serverSettings({ get: <T>(_key: string, defaultValue: T): T => defaultValue });
    assert.deepStrictEqual(sent, DEFAULTS);
    for (const [key, value] of Object.entries(sent)) {
      assert.ok(fields.has(key), `${key} is not a server setting`);
      assert.deepStrictEqual(value, fromPython(fields.get(key)!), `default of ${key}`);
    }
  });

  it("the status method and command ids are the server's", () => {
    const source = fs.readFileSync(path.join(lsp, "server.py"), "utf8");
    assert.match(source, new RegExp(`STATUS_METHOD = "${STATUS_METHOD}"`));
    for (const id of Object.values(SERVER_COMMANDS)) {
      assert.match(source, new RegExp(`= "${id.replace(".", "\\.")}"`), id);
    }
  });
});
