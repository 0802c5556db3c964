// A stand-in extension host for the built bundle: the REAL vscode-languageclient (inlined in the
// bundle) against the REAL codeswift server, with a permissive fake `vscode` (unknown API
// members are no-op stubs). Run by realclient.test.ts in a child process:
//   node host.js <bundle.js> <python> <workspace folder>
// It prints one JSON line with what it observed and exits.
/* eslint-disable @typescript-eslint/no-explicit-any */
import Module from "module";

const [bundle, python, folder] = process.argv.slice(2);

const seen = {
  commands: new Map<string, (...args: any[]) => any>(),
  inlineProviders: 0,
  completionProviders: 0,
  statusTexts: [] as string[],
  log: [] as string[],
  messages: [] as string[],
  documents: [] as string[],
};
const configListeners: Array<(event: any) => any> = [];
const settings: Record<string, unknown> = { "codeswift.pythonPath": python };

const disposable = { dispose(): void {} };
const event = (): typeof disposable => disposable;

/** Anything: callable, constructible, every property another stub; never a thenable. */
function stub(): any {
  const target = function (): any {
    return stub();
  };
  return new Proxy(target, {
    get(t: any, key) {
      if (key === "then" || typeof key === "symbol") return undefined;
      if (key === "dispose") return () => undefined;
      return key in t && key !== "name" && key !== "length" ? t[key] : stub();
    },
    construct: () => ({}),
  });
}

/** `object`, with every other member a stub (`on…` members are events). */
function lenient<T extends object>(object: T): T {
  return new Proxy(object, {
    get: (t: any, key) =>
      key in t || typeof key === "symbol" ? t[key] : String(key).startsWith("on") ? event : stub(),
  });
}

function outputChannel(): any {
  return lenient({
    name: "codeswift",
    logLevel: 2,
    info: (m: string) => seen.log.push(`info ${m}`),
    warn: (m: string) => seen.log.push(`warn ${m}`),
    error: (m: unknown) => seen.log.push(`error ${String(m)}`),
    debug: (m: string) => seen.log.push(`debug ${m}`),
    trace: (m: string) => seen.log.push(`trace ${m}`),
    appendLine: (m: string) => seen.log.push(m),
    append: (m: string) => seen.log.push(m),
    show: () => undefined,
    dispose: () => undefined,
  });
}

const vscode = lenient({
  version: "1.91.0",
  env: lenient({ appName: "codeswift-test-host", language: "en", machineId: "m", sessionId: "s" }),
  StatusBarAlignment: { Left: 1, Right: 2 },
  ThemeColor: class {
    constructor(public id: string) {}
  },
  Disposable: class {
    constructor(private readonly callback?: () => void) {}
    static from(): typeof disposable {
      return disposable;
    }
    dispose(): void {
      this.callback?.();
    }
  },
  EventEmitter: class {
    event = event;
    fire(): void {}
    dispose(): void {}
  },
  commands: lenient({
    registerCommand(id: string, handler: (...args: any[]) => any) {
      if (seen.commands.has(id)) throw new Error(`command '${id}' already exists`);
      seen.commands.set(id, handler);
      return { dispose: () => seen.commands.delete(id) };
    },
    executeCommand: async (id: string, ...args: any[]) => seen.commands.get(id)?.(...args),
  }),
  languages: lenient({
    registerInlineCompletionItemProvider() {
      seen.inlineProviders += 1;
      return { dispose: () => (seen.inlineProviders -= 1) };
    },
    registerCompletionItemProvider() {
      seen.completionProviders += 1;
      return { dispose: () => (seen.completionProviders -= 1) };
    },
    match: () => 0,
  }),
  workspace: lenient({
    textDocuments: [],
    notebookDocuments: [],
    workspaceFolders: [
      {
        uri: { fsPath: folder, scheme: "file", toString: () => `file://${folder}` },
        name: "ws",
        index: 0,
      },
    ],
    getConfiguration: (section?: string) =>
      lenient({
        get: (key: string, fallback?: unknown) => {
          const full = section ? `${section}.${key}` : key;
          return full in settings ? settings[full] : fallback;
        },
        has: () => false,
        inspect: () => undefined,
      }),
    onDidChangeConfiguration(listener: (event: any) => any) {
      configListeners.push(listener);
      return disposable;
    },
    openTextDocument: async (options: { content: string }) => {
      seen.documents.push(options.content);
      return {};
    },
  }),
  window: lenient({
    visibleTextEditors: [],
    activeTextEditor: undefined,
    tabGroups: lenient({ all: [] }),
    createOutputChannel: outputChannel,
    createStatusBarItem: () =>
      lenient({
        show: () => undefined,
        dispose: () => undefined,
        set text(value: string) {
          seen.statusTexts.push(value);
        },
      }),
    showErrorMessage: async (message: string) => void seen.messages.push(`error ${message}`),
    showWarningMessage: async (message: string) => void seen.messages.push(`warning ${message}`),
    showInformationMessage: async (message: string) => void seen.messages.push(`info ${message}`),
    showTextDocument: async () => ({}),
  }),
});

const loader = Module as unknown as { _load: (request: string, ...rest: any[]) => any };
const load = loader._load;
loader._load = function (request: string, ...rest: any[]) {
  return request === "vscode" ? vscode : load.call(this, request, ...rest);
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(test: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > end) return false;
    await sleep(50);
  }
  return true;
}

async function changeSettings(values: Record<string, unknown>): Promise<void> {
  Object.assign(settings, values);
  const keys = Object.keys(values);
  const change = {
    affectsConfiguration: (section: string) =>
      keys.some((k) => k === section || k.startsWith(`${section}.`)),
  };
  await Promise.all(configListeners.map((listener) => listener(change)));
}

const serverCommands = () =>
  ["codeswift.accept", "codeswift.toggle", "codeswift.reindex", "codeswift.stats"].filter((id) =>
    seen.commands.has(id),
  );

async function main(): Promise<Record<string, unknown>> {
  const extension = require(bundle);
  const context = { subscriptions: [] as Array<{ dispose(): unknown }> };
  const api = extension.activate(context);
  await api.started;
  const result: Record<string, unknown> = {};
  // the first status after `starting` comes once the server is initialized
  result.statusArrived = await until(
    () => seen.statusTexts.some((t) => !t.includes("starting")),
    60_000,
  );
  result.serverCommands = serverCommands();
  result.inlineProviders = seen.inlineProviders;
  result.completionProviders = seen.completionProviders;

  // what VS Code does after an inline item is accepted: run the item's command
  await vscode.commands.executeCommand("codeswift.accept", "completion-id");
  await vscode.commands.executeCommand("codeswift.showStats");
  result.stats = JSON.parse(seen.documents[seen.documents.length - 1] ?? "null");

  await vscode.commands.executeCommand("codeswift.toggleEnable");
  await until(() => seen.statusTexts[seen.statusTexts.length - 1].includes("circle-slash"), 5000);
  result.afterToggle = seen.statusTexts[seen.statusTexts.length - 1];
  await vscode.commands.executeCommand("codeswift.toggleEnable");

  // a bad value: the server says so in the log, which shows the setting reached it
  await changeSettings({ "codeswift.debounceMs": 99_999 });
  result.settingReached = await until(
    () => seen.log.some((l) => l.includes("debounceMs=99999")),
    10_000,
  );

  // a restart must hand the server's commands over to the new client
  await vscode.commands.executeCommand("codeswift.restart");
  result.afterRestart = serverCommands();
  await vscode.commands.executeCommand("codeswift.showStats");
  result.statsAfterRestart = JSON.parse(seen.documents[seen.documents.length - 1] ?? "null");

  await extension.deactivate();
  result.afterDeactivate = serverCommands();
  result.inlineProvidersAfterDeactivate = seen.inlineProviders;
  result.messages = seen.messages;
  result.log = seen.log.filter((line) => !line.startsWith("trace")).slice(-40);
  return result;
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
  },
  (error) => {
    process.stdout.write(
      JSON.stringify({ error: String(error?.stack ?? error), log: seen.log }) + "\n",
    );
    process.exit(1);
  },
);
