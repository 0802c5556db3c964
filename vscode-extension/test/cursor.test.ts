import * as assert from "assert";
import { CURSOR_METHOD, CursorParams, CursorWatcher, REST_MS } from "../src/cursor";
import * as vscode from "./fakes/vscode";
import { Activated, activateWith, deactivateAll, goodPython, lastClient } from "./helpers";

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("cursor watcher", () => {
  let sent: CursorParams[] = [];
  let watcher: CursorWatcher | undefined;
  beforeEach(() => {
    vscode.reset();
    sent = [];
  });
  afterEach(() => watcher?.dispose());

  it("tells where the cursor rests once it stopped moving", async () => {
    vscode.focusEditor(new vscode.FakeTextEditor("file:///w/a.py", 3, 4));
    watcher = new CursorWatcher((params) => sent.push(params), 20);
    vscode.moveCursor(5, 1);
    vscode.moveCursor(5, 2);
    await wait(60);
    assert.deepStrictEqual(sent, [
      { textDocument: { uri: "file:///w/a.py" }, position: { line: 5, character: 2 } },
    ]);
  });

  it("follows focus, and ignores other schemes, selections and moves after dispose", async () => {
    watcher = new CursorWatcher((params) => sent.push(params), 20);
    vscode.focusEditor(new vscode.FakeTextEditor("output:codeswift", 0, 0));
    await wait(60);
    const untitled = new vscode.FakeTextEditor("untitled:Untitled-1", 0, 7);
    vscode.focusEditor(untitled);
    await wait(60);
    untitled.selection = { active: { line: 0, character: 9 }, isEmpty: false };
    vscode.focusEditor(untitled);
    await wait(60);
    watcher.dispose();
    vscode.moveCursor(1, 1);
    await wait(60);
    assert.deepStrictEqual(sent, [
      { textDocument: { uri: "untitled:Untitled-1" }, position: { line: 0, character: 7 } },
    ]);
  });
});

const suite = process.platform === "win32" ? describe.skip : describe;

suite("cursor notifications", () => {
  let activated: Activated | undefined;
  afterEach(async () => {
    await deactivateAll(activated);
    activated = undefined;
  });

  it("go to the running server while completions are enabled", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    vscode.focusEditor(new vscode.FakeTextEditor("file:///w/b.py", 2, 0));
    await wait(REST_MS + 50);
    const cursors = lastClient().notifications.filter((n) => n.method === CURSOR_METHOD);
    assert.deepStrictEqual(cursors, [
      {
        method: CURSOR_METHOD,
        params: { textDocument: { uri: "file:///w/b.py" }, position: { line: 2, character: 0 } },
      },
    ]);

    await vscode.changeSettings({ "codeswift.enable": false });
    vscode.moveCursor(4, 4);
    await wait(REST_MS + 50);
    assert.strictEqual(
      lastClient().notifications.filter((n) => n.method === CURSOR_METHOD).length,
      1,
    );
  });
});
