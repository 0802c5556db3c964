import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import { COMMANDS, SERVER_COMMANDS } from "../src/ids";
import { DEFAULTS, serverSettings } from "../src/settings";

// out/test/ -> the extension's folder
const root = path.resolve(__dirname, "..", "..");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const properties: Record<string, Record<string, unknown>> = manifest.contributes.configuration
  .properties;

/** The setting keys (without `codeswift.`) that the extension reads, with their defaults. */
function keysRead(): Map<string, unknown> {
  const read = new Map<string, unknown>([["pythonPath", ""]]);
  serverSettings({
    get: <T>(key: string, defaultValue: T): T => {
      read.set(key, defaultValue);
      return defaultValue;
    },
  });
  return read;
}

describe("package.json", () => {
  it("identifies the extension and bundles to dist/extension.js", () => {
    assert.strictEqual(manifest.name, "codeswift");
    assert.strictEqual(manifest.publisher, "codeswift");
    assert.strictEqual(manifest.displayName, "codeswift");
    assert.strictEqual(manifest.version, "0.1.0");
    assert.strictEqual(manifest.main, "./dist/extension.js");
    assert.strictEqual(manifest.engines.vscode, "^1.91.0");
    assert.match(manifest.devDependencies.typescript, /^~5\./);
  });

  it("contributes exactly the commands the extension registers, none of the server's", () => {
    const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command);
    assert.deepStrictEqual(contributed.sort(), Object.values(COMMANDS).sort());
    for (const id of Object.values(SERVER_COMMANDS)) {
      assert.ok(!contributed.includes(id));
    }
  });

  it("binds alt+\\ to trigger in the editor", () => {
    assert.deepStrictEqual(manifest.contributes.keybindings, [
      { command: COMMANDS.trigger, key: "alt+\\", when: "editorTextFocus" },
    ]);
  });

  it("declares every setting the extension reads, with scope, description and the same default", () => {
    for (const [key, defaultValue] of keysRead()) {
      const property = properties[`codeswift.${key}`];
      assert.ok(property, `codeswift.${key} is read but not declared`);
      assert.deepStrictEqual(property.default, defaultValue, `default of codeswift.${key}`);
    }
    for (const [key, property] of Object.entries(properties)) {
      assert.ok(property.scope, `${key} has no scope`);
      assert.ok(property.description || property.markdownDescription, `${key} has no description`);
    }
    assert.strictEqual(properties["codeswift.pythonPath"].scope, "machine-overridable");
  });

  it("declares no setting the extension ignores (trace.server is read by the language client)", () => {
    const read = keysRead();
    for (const key of Object.keys(properties)) {
      const name = key.replace(/^codeswift\./, "");
      assert.ok(read.has(name) || name === "trace.server", `${key} is declared but never read`);
    }
  });

  it("in an untrusted workspace, the workspace cannot choose what runs", () => {
    const trust = manifest.capabilities.untrustedWorkspaces;
    assert.strictEqual(trust.supported, "limited");
    assert.deepStrictEqual(trust.restrictedConfigurations.sort(), [
      "codeswift.model",
      "codeswift.pythonPath",
    ]);
  });

  it("offers the server's own choices for enums", () => {
    assert.deepStrictEqual(properties["codeswift.multiline"].enum, ["auto", "always", "never"]);
    assert.deepStrictEqual(properties["codeswift.device"].enum, ["auto", "cpu", "cuda"]);
    assert.deepStrictEqual(properties["codeswift.dtype"].enum, [
      "auto",
      "bfloat16",
      "float32",
      "float16",
    ]);
    assert.deepStrictEqual(properties["codeswift.logLevel"].enum, [
      "error",
      "warning",
      "info",
      "debug",
    ]);
    assert.strictEqual(properties["codeswift.multiline"].default, DEFAULTS.multiline);
  });
});
