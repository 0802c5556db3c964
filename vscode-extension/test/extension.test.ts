import * as assert from "assert";
import { LanguageClient, TransportKind } from "./fakes/languageclient";
import * as vscode from "./fakes/vscode";
import {
  Activated,
  activateWith,
  deactivateAll,
  fakePython,
  goodPython,
  lastClient,
  MODULE_MISSING,
  settle,
} from "./helpers";
import { COMMANDS, SERVER_COMMANDS, VSCODE_COMMANDS } from "../src/ids";
import { MENU } from "../src/commands";
import { deactivate } from "../src/extension";

// The activation tests start real (stand-in) interpreters through child_process.
const suite = process.platform === "win32" ? describe.skip : describe;

suite("activation", () => {
  let activated: Activated | undefined;
  afterEach(async () => {
    await deactivateAll(activated);
    activated = undefined;
  });

  it("creates the log channel, the status item and every command, then starts the client", async () => {
    const python = goodPython();
    activated = await activateWith({ "codeswift.pythonPath": python });
    const { editor } = activated;
    assert.strictEqual(editor.outputs.length, 1);
    assert.strictEqual(editor.outputs[0].name, "codeswift");
    assert.deepStrictEqual(editor.outputs[0].options, { log: true });
    assert.strictEqual(editor.statusItems.length, 1);
    assert.deepStrictEqual([...editor.commands.keys()].sort(), Object.values(COMMANDS).sort());

    assert.strictEqual(LanguageClient.instances.length, 1);
    const client = lastClient();
    assert.ok(client.running);
    assert.strictEqual(client.id, "codeswift");
    assert.deepStrictEqual(client.serverOptions, {
      command: python,
      args: ["-m", "daemon", "serve"],
      transport: TransportKind.stdio,
    });
    assert.deepStrictEqual(client.clientOptions.documentSelector, [
      { scheme: "file" },
      { scheme: "untitled" },
    ]);
    assert.strictEqual(client.clientOptions.outputChannel, editor.outputs[0]);
  });

  it("sends the settings as flat camelCase initializationOptions", async () => {
    activated = await activateWith({
      "codeswift.pythonPath": goodPython(),
      "codeswift.maxNewTokens": 16,
      "codeswift.index.exclude": ["dist/**"],
      "codeswift.model": "qwen2.5-coder-0.5b",
    });
    const options = lastClient().initializationOptions() as Record<string, unknown>;
    assert.strictEqual(options.maxNewTokens, 16);
    assert.deepStrictEqual(options.indexExclude, ["dist/**"]);
    assert.deepStrictEqual(options.indexInclude, []);
    assert.strictEqual(options.model, "qwen2.5-coder-0.5b");
    assert.ok(!("pythonPath" in options), "pythonPath is the client's, not the server's");
  });

  it("shows codeswift/status notifications on the status bar", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    const item = activated.editor.statusItems[0];
    const client = lastClient();
    client.notify("codeswift/status", { state: "loading", model: "qwen" });
    assert.strictEqual(item.text, "$(sync~spin) codeswift: loading…");
    client.notify("codeswift/status", { state: "indexing", done: 5, total: 9 });
    assert.strictEqual(item.text, "$(sync~spin) codeswift: indexing 5/9");
    client.notify("codeswift/status", { state: "ready", device: "cpu" });
    assert.strictEqual(item.text, "$(check) codeswift (cpu)");
    client.notify("codeswift/status", { state: "disabled" });
    assert.strictEqual(item.text, "$(circle-slash) codeswift");
  });

  it("an error status (model not set up) offers Run setup, once per message", async () => {
    const python = goodPython();
    activated = await activateWith({ "codeswift.pythonPath": python });
    const { editor } = activated;
    editor.answers.push({ match: /not set up/, button: "Run setup" });
    const client = lastClient();
    const error = {
      state: "error",
      message: "cannot load model m: model m is not set up yet; run `codeswift setup --model m`",
    };
    client.notify("codeswift/status", error);
    client.notify("codeswift/status", error);
    await settle();
    const errors = editor.messages.filter((m) => m.kind === "error");
    assert.strictEqual(errors.length, 1);
    assert.strictEqual(errors[0].message, `codeswift: ${error.message}`);
    assert.deepStrictEqual(errors[0].buttons, ["Run setup", "Open log"]);
    assert.strictEqual(editor.statusItems[0].text, "$(error) codeswift");
    assert.match(String(editor.statusItems[0].tooltip), /not set up/);
    // the button opened the setup terminal with the same interpreter
    assert.strictEqual(editor.terminals.length, 1);
    assert.deepStrictEqual(editor.terminals[0].sent, [
      `${python} -m daemon setup --model qwen2.5-coder-0.5b`,
    ]);
    assert.ok(editor.terminals[0].shown);
  });

  it("Python not found: no client, a message with Open settings and Open log", async () => {
    activated = await activateWith(
      { "codeswift.pythonPath": "/nonexistent/bin/python" },
      (editor) => editor.answers.push({ match: /Python not found/, button: "Open log" }),
    );
    const { editor } = activated;
    assert.strictEqual(LanguageClient.instances.length, 0);
    const [message] = editor.messages;
    assert.strictEqual(
      message.message,
      "codeswift: Python not found at /nonexistent/bin/python. Set codeswift.pythonPath.",
    );
    assert.deepStrictEqual(message.buttons, ["Open settings", "Open log"]);
    assert.strictEqual(editor.outputs[0].shown, 1, "Open log shows the channel");
    assert.ok(
      editor.outputs[0].lines.some((line) => line.includes("ENOENT")),
      "the log says why",
    );
    assert.strictEqual(editor.statusItems[0].text, "$(error) codeswift");
  });

  it("package not installed: the message names the interpreter and the fix", async () => {
    const python = fakePython("python3", 1, MODULE_MISSING);
    activated = await activateWith({ "codeswift.pythonPath": python }, (editor) =>
      editor.answers.push({ match: /not installed/, button: "Open settings" }),
    );
    const { editor } = activated;
    assert.strictEqual(LanguageClient.instances.length, 0);
    assert.strictEqual(editor.messages.length, 1);
    assert.strictEqual(
      editor.messages[0].message,
      `codeswift is not installed in ${python}: pip install -e <codeswift checkout> / make setup (or set codeswift.pythonPath).`,
    );
    assert.deepStrictEqual(editor.executed.at(-1), [
      VSCODE_COMMANDS.openSettings,
      "codeswift.pythonPath",
    ]);
    assert.ok(editor.outputs[0].lines.some((line) => line.includes("No module named 'daemon'")));
  });

  it("fixing pythonPath after a failed start starts the server", async () => {
    activated = await activateWith({ "codeswift.pythonPath": "/nonexistent/bin/python" });
    await vscode.changeSettings({ "codeswift.pythonPath": goodPython() });
    assert.strictEqual(LanguageClient.instances.length, 1);
    assert.ok(lastClient().running);
    assert.strictEqual(activated.editor.statusItems[0].text, "$(sync~spin) codeswift: starting…");
  });

  it("a client that fails to start shows an error status (the client itself shows the message)", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() }, () => {
      LanguageClient.failNextStart = new Error("initialize failed");
    });
    assert.strictEqual(activated.editor.statusItems[0].text, "$(error) codeswift");
    assert.match(String(activated.editor.statusItems[0].tooltip), /initialize failed/);
  });

  it("a server that dies shows an error status", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    lastClient().crash();
    assert.strictEqual(activated.editor.statusItems[0].text, "$(error) codeswift");
  });

  it("a settings change is sent as workspace/didChangeConfiguration (flat), no restart", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    const client = lastClient();
    await vscode.changeSettings({
      "codeswift.debounceMs": 200,
      "codeswift.index.include": ["src/**"],
    });
    assert.strictEqual(LanguageClient.instances.length, 1);
    assert.strictEqual(client.notifications.length, 1);
    const { method, params } = client.notifications[0];
    assert.strictEqual(method, "workspace/didChangeConfiguration");
    const settings = (params as { settings: Record<string, unknown> }).settings;
    assert.strictEqual(settings.debounceMs, 200);
    assert.deepStrictEqual(settings.indexInclude, ["src/**"]);
  });

  it("turning codeswift.enable off shows as disabled", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    lastClient().notify("codeswift/status", { state: "ready", device: "cpu" });
    await vscode.changeSettings({ "codeswift.enable": false });
    assert.strictEqual(activated.editor.statusItems[0].text, "$(circle-slash) codeswift");
    const { params } = lastClient().notifications[0];
    assert.strictEqual((params as { settings: { enable: boolean } }).settings.enable, false);
  });

  it("other extensions' settings are not sent", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    await vscode.changeSettings({ "editor.fontSize": 20 });
    assert.strictEqual(lastClient().notifications.length, 0);
  });

  it("a pythonPath change restarts the server with the new interpreter", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    const old = lastClient();
    const next = goodPython();
    await vscode.changeSettings({ "codeswift.pythonPath": next });
    assert.strictEqual(old.stopped, 1);
    assert.strictEqual(LanguageClient.instances.length, 2);
    assert.strictEqual((lastClient().serverOptions as { command: string }).command, next);
    assert.ok(lastClient().running);
    assert.strictEqual(old.notifications.length, 0);
  });

  it("restart stops the old client before the new one starts (the server's commands move over)", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    await Promise.all([
      vscode.commands.executeCommand(COMMANDS.restart),
      vscode.commands.executeCommand(COMMANDS.restart),
    ]);
    const [first, second, third] = LanguageClient.instances;
    assert.strictEqual(LanguageClient.instances.length, 3);
    assert.strictEqual(first.stopped, 1);
    assert.strictEqual(second.stopped, 1);
    assert.ok(third.running);
  });

  it("granting workspace trust restarts the server (workspace settings now count)", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    await Promise.all(activated.editor.trustListeners.map((listener) => listener()));
    assert.strictEqual(LanguageClient.instances.length, 2);
    assert.strictEqual(LanguageClient.instances[0].stopped, 1);
  });

  it("deactivate stops the server", async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
    const client = lastClient();
    await deactivate();
    assert.strictEqual(client.stopped, 1);
  });
});

suite("commands", () => {
  let activated: Activated | undefined;
  beforeEach(async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
  });
  afterEach(async () => {
    await deactivateAll(activated);
    activated = undefined;
  });

  const run = (id: string) => vscode.commands.executeCommand(id);
  const commandRequests = () =>
    lastClient().requests.map((r) => [r.method, (r.params as { command: string }).command]);

  it("client command ids never collide with the server's (the client registers those)", () => {
    const ours = new Set<string>(Object.values(COMMANDS));
    for (const id of Object.values(SERVER_COMMANDS)) {
      assert.ok(!ours.has(id), `${id} is a server command`);
    }
    assert.ok(!activated!.editor.commands.has(SERVER_COMMANDS.accept));
  });

  it("trigger runs VS Code's inline suggest trigger", async () => {
    await run(COMMANDS.trigger);
    assert.deepStrictEqual(activated!.editor.executed.at(-1), [
      "editor.action.inlineSuggest.trigger",
    ]);
  });

  it("toggleEnable sends codeswift.toggle and says the new state", async () => {
    LanguageClient.commandResults[SERVER_COMMANDS.toggle] = { enabled: false };
    await run(COMMANDS.toggleEnable);
    assert.deepStrictEqual(commandRequests(), [["workspace/executeCommand", "codeswift.toggle"]]);
    await settle();
    assert.strictEqual(activated!.editor.messages.at(-1)?.message, "codeswift: completions off");
  });

  it("reindexWorkspace sends codeswift.reindex", async () => {
    await run(COMMANDS.reindexWorkspace);
    assert.deepStrictEqual(commandRequests(), [["workspace/executeCommand", "codeswift.reindex"]]);
  });

  it("showStats opens the server's stats as a JSON document", async () => {
    LanguageClient.commandResults[SERVER_COMMANDS.stats] = { state: "ready", latencyP50Ms: 120 };
    await run(COMMANDS.showStats);
    assert.deepStrictEqual(commandRequests(), [["workspace/executeCommand", "codeswift.stats"]]);
    const [document] = activated!.editor.documents;
    assert.strictEqual(document.language, "json");
    assert.deepStrictEqual(JSON.parse(document.content!), { state: "ready", latencyP50Ms: 120 });
    assert.strictEqual(activated!.editor.shownDocuments.length, 1);
  });

  it("server commands without a server say so, with Restart server and Open log", async () => {
    await lastClient().stop();
    await run(COMMANDS.showStats);
    await settle();
    const message = activated!.editor.messages.at(-1);
    assert.strictEqual(message?.message, "codeswift: the server is not running.");
    assert.deepStrictEqual(message?.buttons, ["Restart server", "Open log"]);
    assert.strictEqual(activated!.editor.documents.length, 0);
  });

  it("showOutput shows the log channel", async () => {
    await run(COMMANDS.showOutput);
    assert.strictEqual(activated!.editor.outputs[0].shown, 1);
  });

  it("runSetup opens a terminal running `<python> -m daemon setup --model <model>`", async () => {
    vscode.fake.settings["codeswift.model"] = "qwen2.5-coder-1.5b";
    const python = String(vscode.fake.settings["codeswift.pythonPath"]);
    await run(COMMANDS.runSetup);
    const [terminal] = activated!.editor.terminals;
    assert.strictEqual(terminal.options.name, "codeswift setup");
    assert.deepStrictEqual(terminal.sent, [`${python} -m daemon setup --model qwen2.5-coder-1.5b`]);
  });

  it("the status bar menu lists Toggle, Restart, Show log, Reindex, Show stats and runs the pick", async () => {
    const commands = MENU.map((item) => item.command);
    assert.deepStrictEqual(commands.slice(0, 5), [
      COMMANDS.toggleEnable,
      COMMANDS.restart,
      COMMANDS.showOutput,
      COMMANDS.reindexWorkspace,
      COMMANDS.showStats,
    ]);
    assert.strictEqual(activated!.editor.statusItems[0].command, COMMANDS.showMenu);
    for (const item of MENU) {
      vscode.fake.executed = [];
      vscode.fake.quickPickAnswer = (items) =>
        items.find((i) => (i as { command: string }).command === item.command);
      await run(COMMANDS.showMenu);
      assert.deepStrictEqual(vscode.fake.executed[1], [item.command], item.label);
    }
    vscode.fake.quickPickAnswer = () => undefined; // dismissed: nothing runs
    vscode.fake.executed = [];
    await run(COMMANDS.showMenu);
    assert.deepStrictEqual(vscode.fake.executed, [[COMMANDS.showMenu]]);
  });

  it("the menu's Toggle reaches the server", async () => {
    vscode.fake.quickPickAnswer = (items) => items[0];
    await run(COMMANDS.showMenu);
    assert.deepStrictEqual(commandRequests(), [["workspace/executeCommand", "codeswift.toggle"]]);
  });
});

suite("completion middleware", () => {
  let activated: Activated | undefined;
  beforeEach(async () => {
    activated = await activateWith({ "codeswift.pythonPath": goodPython() });
  });
  afterEach(async () => {
    await deactivateAll(activated);
    activated = undefined;
  });

  const middleware = () => lastClient().clientOptions.middleware!;

  it("spins the status item while an inline completion is pending", async () => {
    const item = activated!.editor.statusItems[0];
    lastClient().notify("codeswift/status", { state: "ready", device: "cpu" });
    let finish: (value: unknown) => void = () => undefined;
    const pending = middleware().provideInlineCompletionItems(
      "doc",
      "pos",
      "ctx",
      "token",
      () => new Promise((resolve) => (finish = resolve)),
    );
    assert.strictEqual(item.text, "$(sync~spin) codeswift (cpu)");
    finish({ items: [{ insertText: "x" }] });
    assert.deepStrictEqual(await pending, { items: [{ insertText: "x" }] });
    assert.strictEqual(item.text, "$(check) codeswift (cpu)");
  });

  it("codeswift.enable = false asks the server nothing", async () => {
    vscode.fake.settings["codeswift.enable"] = false;
    let asked = false;
    const result = await middleware().provideInlineCompletionItems("d", "p", "c", "t", async () => {
      asked = true;
    });
    assert.strictEqual(result, null);
    assert.ok(!asked);
  });

  it("the server's textDocument/completion fallback is not used in VS Code", async () => {
    let asked = false;
    const result = await middleware().provideCompletionItem("d", "p", "c", "t", async () => {
      asked = true;
    });
    assert.strictEqual(result, undefined);
    assert.ok(!asked);
  });
});
