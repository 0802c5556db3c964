import * as assert from "assert";
import * as vscode from "./fakes/vscode";
import { describe as look, StatusView } from "../src/status";

describe("status notification -> status bar", () => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ state: "starting" }, "$(sync~spin) codeswift: starting…", /starting/],
    [
      { state: "loading", message: "loading qwen", model: "qwen" },
      "$(sync~spin) codeswift: loading…",
      /loading qwen/,
    ],
    [
      { state: "indexing", done: 3, total: 40 },
      "$(sync~spin) codeswift: indexing 3/40",
      /indexing/,
    ],
    [{ state: "indexing" }, "$(sync~spin) codeswift: indexing…", /indexing/],
    [
      {
        state: "ready",
        model: "qwen",
        device: "cpu",
        dtype: "float32",
        lastLatencyMs: 212.4,
        acceptRate: 0.25,
      },
      "$(check) codeswift (cpu)",
      /Model: qwen \(cpu, float32\)\nLast completion: 212 ms\nAccepted: 25%/,
    ],
    [{ state: "ready" }, "$(check) codeswift", /ready/],
    [{ state: "busy", device: "cuda:0" }, "$(sync~spin) codeswift (cuda:0)", /busy/],
    [
      { state: "error", message: "cannot load model m: not set up" },
      "$(error) codeswift",
      /cannot load model m: not set up/,
    ],
    [{ state: "disabled", device: "cpu" }, "$(circle-slash) codeswift", /Completions are off/],
    [{ state: "mystery" }, "$(question) codeswift: mystery", /mystery/],
  ];
  for (const [status, text, tooltip] of cases) {
    it(`${JSON.stringify(status)} -> ${text}`, () => {
      const shown = look(status as never);
      assert.strictEqual(shown.text, text);
      assert.match(shown.tooltip, tooltip);
      assert.match(shown.tooltip, /Click for codeswift actions/);
      assert.strictEqual(shown.error, status.state === "error");
    });
  }

  it("spins while a completion request is in flight", () => {
    assert.strictEqual(
      look({ state: "ready", device: "cpu" }, 1).text,
      "$(sync~spin) codeswift (cpu)",
    );
  });

  it("drives one visible item whose click opens the menu", () => {
    const editor = vscode.reset();
    const view = new StatusView("codeswift.showMenu");
    const item = editor.statusItems[0];
    assert.strictEqual(editor.statusItems.length, 1);
    assert.ok(item.visible);
    assert.strictEqual(item.command, "codeswift.showMenu");
    assert.strictEqual(item.text, "$(sync~spin) codeswift: starting…");

    view.update({ state: "ready", device: "cpu" });
    assert.strictEqual(item.text, "$(check) codeswift (cpu)");
    view.requestStarted();
    view.requestStarted();
    view.requestEnded();
    assert.strictEqual(item.text, "$(sync~spin) codeswift (cpu)");
    view.requestEnded();
    view.requestEnded(); // never below zero
    assert.strictEqual(item.text, "$(check) codeswift (cpu)");

    view.error("boom");
    assert.strictEqual(item.text, "$(error) codeswift");
    assert.match(String(item.tooltip), /boom/);
    assert.strictEqual(item.backgroundColor?.id, "statusBarItem.errorBackground");
    view.update({ state: "ready" });
    assert.strictEqual(item.backgroundColor, undefined);
    view.setEnabled(false); // codeswift.enable off: the client asks the server nothing
    assert.strictEqual(item.text, "$(circle-slash) codeswift");
    assert.match(String(item.tooltip), /codeswift.enable is off/);
    view.update({ state: "loading" });
    assert.strictEqual(item.text, "$(sync~spin) codeswift: loading…", "progress still shows");
    view.setEnabled(true);
    view.update({ state: "ready" });
    assert.strictEqual(item.text, "$(check) codeswift");
    view.dispose();
    assert.ok(item.disposed);
  });
});
