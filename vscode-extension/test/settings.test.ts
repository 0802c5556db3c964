import * as assert from "assert";
import * as os from "os";
import { ConfigurationReader, DEFAULTS, pythonPath, serverSettings } from "../src/settings";

/** A `codeswift` configuration section holding `values` (keys without the prefix). */
function section(values: Record<string, unknown>): ConfigurationReader {
  return {
    get: <T>(key: string, defaultValue: T): T =>
      key in values ? (values[key] as T) : defaultValue,
  };
}

describe("settings -> initializationOptions", () => {
  it("sends the server's defaults when nothing is set", () => {
    assert.deepStrictEqual(serverSettings(section({})), { ...DEFAULTS });
    assert.strictEqual(DEFAULTS.model, "qwen2.5-coder-0.5b");
  });

  it("maps every setting to the server's flat camelCase key", () => {
    const settings = serverSettings(
      section({
        enable: false,
        autoTrigger: false,
        debounceMs: 120,
        maxNewTokens: 32,
        multiline: "never",
        timeoutMs: 3000,
        predictNext: false,
        model: "qwen2.5-coder-1.5b",
        device: "cpu",
        dtype: "float32",
        "index.include": ["src/**"],
        "index.exclude": ["**/vendor/**", "*.min.js"],
        "index.secrets": true,
        logLevel: "debug",
      }),
    );
    assert.deepStrictEqual(settings, {
      enable: false,
      autoTrigger: false,
      debounceMs: 120,
      maxNewTokens: 32,
      multiline: "never",
      timeoutMs: 3000,
      predictNext: false,
      model: "qwen2.5-coder-1.5b",
      device: "cpu",
      dtype: "float32",
      indexInclude: ["src/**"],
      indexExclude: ["**/vendor/**", "*.min.js"],
      indexSecrets: true,
      logLevel: "debug",
    });
    const keys = Object.keys(settings);
    assert.ok(
      keys.every((key) => /^[a-z][A-Za-z]*$/.test(key)),
      `not flat camelCase: ${keys}`,
    );
  });

  it("rounds numbers (the server takes only whole ones)", () => {
    const settings = serverSettings(section({ debounceMs: 75.6, maxNewTokens: 10.2 }));
    assert.strictEqual(settings.debounceMs, 76);
    assert.strictEqual(settings.maxNewTokens, 10);
  });

  it("keeps only the strings of a hand-edited glob list", () => {
    const settings = serverSettings(
      section({ "index.include": ["a/**", 3, null], "index.exclude": "b" }),
    );
    assert.deepStrictEqual(settings.indexInclude, ["a/**"]);
    assert.deepStrictEqual(settings.indexExclude, []);
  });

  it("trims the model; a blank one is the default (the server would keep the old one)", () => {
    assert.strictEqual(serverSettings(section({ model: "  m  " })).model, "m");
    assert.strictEqual(serverSettings(section({ model: "   " })).model, DEFAULTS.model);
  });
});

describe("pythonPath", () => {
  it("is python3 from PATH when empty", () => {
    const expected = process.platform === "win32" ? "python" : "python3";
    assert.strictEqual(pythonPath(section({})), expected);
    assert.strictEqual(pythonPath(section({ pythonPath: "  " })), expected);
  });

  it("is the setting, with ~ and ${workspaceFolder} expanded", () => {
    assert.strictEqual(
      pythonPath(section({ pythonPath: "/opt/py/bin/python" })),
      "/opt/py/bin/python",
    );
    assert.strictEqual(
      pythonPath(section({ pythonPath: "~/venv/bin/python" })),
      `${os.homedir()}/venv/bin/python`,
    );
    assert.strictEqual(
      pythonPath(section({ pythonPath: "${workspaceFolder}/.venv/bin/python" }), "/ws"),
      "/ws/.venv/bin/python",
    );
  });
});
