// A fake `vscode` module: the API surface the extension uses, recording what it is asked to do.
// `reset()` gives every test a fresh editor.

type Listener<T> = (value: T) => unknown;

export class Disposable {
  constructor(private readonly callback: () => void = () => undefined) {}
  dispose(): void {
    this.callback();
  }
}

export class ThemeColor {
  constructor(public readonly id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export class FakeStatusBarItem {
  text = "";
  tooltip: string | undefined;
  command: string | undefined;
  name: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible = false;
  disposed = false;
  constructor(
    public readonly alignment: StatusBarAlignment,
    public readonly priority: number,
  ) {}
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.disposed = true;
  }
}

export class FakeOutputChannel {
  lines: string[] = [];
  shown = 0;
  constructor(
    public readonly name: string,
    public readonly options: unknown,
  ) {}
  info(message: string): void {
    this.lines.push(`info ${message}`);
  }
  warn(message: string): void {
    this.lines.push(`warn ${message}`);
  }
  error(message: string): void {
    this.lines.push(`error ${message}`);
  }
  debug(message: string): void {
    this.lines.push(`debug ${message}`);
  }
  trace(message: string): void {
    this.lines.push(`trace ${message}`);
  }
  appendLine(message: string): void {
    this.lines.push(message);
  }
  append(message: string): void {
    this.lines.push(message);
  }
  show(): void {
    this.shown += 1;
  }
  dispose(): void {}
}

export class FakeTerminal {
  sent: string[] = [];
  shown = false;
  constructor(public readonly options: { name?: string }) {}
  show(): void {
    this.shown = true;
  }
  sendText(text: string): void {
    this.sent.push(text);
  }
  dispose(): void {}
}

export interface Message {
  kind: "error" | "warning" | "info";
  message: string;
  buttons: string[];
}

/** Everything the fake editor saw, and the answers it will give. */
export class FakeState {
  settings: Record<string, unknown> = {};
  commands = new Map<string, (...args: unknown[]) => unknown>();
  executed: unknown[][] = [];
  messages: Message[] = [];
  /** The button each kind of message "clicks" (by message text match), else none. */
  answers: Array<{ match: RegExp; button: string }> = [];
  quickPickAnswer: ((items: readonly unknown[]) => unknown) | undefined;
  quickPicks: unknown[][] = [];
  statusItems: FakeStatusBarItem[] = [];
  outputs: FakeOutputChannel[] = [];
  terminals: FakeTerminal[] = [];
  documents: Array<{ language?: string; content?: string }> = [];
  shownDocuments: unknown[] = [];
  configListeners: Array<Listener<unknown>> = [];
  trustListeners: Array<Listener<void>> = [];
  workspaceFolders: Array<{ uri: { fsPath: string } }> | undefined = undefined;
  activeTextEditor: FakeTextEditor | undefined = undefined;
  editorListeners: Array<Listener<FakeTextEditor | undefined>> = [];
  selectionListeners: Array<Listener<{ textEditor: FakeTextEditor }>> = [];
}

/** An editor on a document at `uri`, its cursor at (line, character), nothing selected. */
export class FakeTextEditor {
  selection: { active: { line: number; character: number }; isEmpty: boolean };
  readonly document: { uri: { scheme: string; toString(): string } };
  constructor(uri: string, line: number, character: number) {
    const scheme = uri.split(":")[0];
    this.document = { uri: { scheme, toString: () => uri } };
    this.selection = { active: { line, character }, isEmpty: true };
  }
}

/** The user focuses `editor` (undefined: no editor), as the window would report it. */
export function focusEditor(editor: FakeTextEditor | undefined): void {
  fake.activeTextEditor = editor;
  fake.editorListeners.forEach((listener) => listener(editor));
}

/** The cursor of the active editor moves to (line, character). */
export function moveCursor(line: number, character: number): void {
  const editor = fake.activeTextEditor;
  if (editor !== undefined) {
    editor.selection = { active: { line, character }, isEmpty: true };
    fake.selectionListeners.forEach((listener) => listener({ textEditor: editor }));
  }
}

export let fake = new FakeState();

export function reset(): FakeState {
  fake = new FakeState();
  return fake;
}

async function message(kind: Message["kind"], text: string, buttons: unknown[]) {
  const names = buttons.filter((b): b is string => typeof b === "string");
  fake.messages.push({ kind, message: text, buttons: names });
  const answer = fake.answers.find((a) => a.match.test(text) && names.includes(a.button));
  return answer?.button;
}

export const window = {
  get activeTextEditor() {
    return fake.activeTextEditor;
  },
  onDidChangeActiveTextEditor(listener: Listener<FakeTextEditor | undefined>) {
    fake.editorListeners.push(listener);
    return new Disposable(() => {
      fake.editorListeners = fake.editorListeners.filter((l) => l !== listener);
    });
  },
  onDidChangeTextEditorSelection(listener: Listener<{ textEditor: FakeTextEditor }>) {
    fake.selectionListeners.push(listener);
    return new Disposable(() => {
      fake.selectionListeners = fake.selectionListeners.filter((l) => l !== listener);
    });
  },
  createStatusBarItem(alignment: StatusBarAlignment, priority: number) {
    const item = new FakeStatusBarItem(alignment, priority);
    fake.statusItems.push(item);
    return item;
  },
  createOutputChannel(name: string, options?: unknown) {
    const channel = new FakeOutputChannel(name, options);
    fake.outputs.push(channel);
    return channel;
  },
  createTerminal(options: { name?: string }) {
    const terminal = new FakeTerminal(options);
    fake.terminals.push(terminal);
    return terminal;
  },
  showErrorMessage: (text: string, ...buttons: unknown[]) => message("error", text, buttons),
  showWarningMessage: (text: string, ...buttons: unknown[]) => message("warning", text, buttons),
  showInformationMessage: (text: string, ...buttons: unknown[]) => message("info", text, buttons),
  async showQuickPick(items: readonly unknown[]) {
    fake.quickPicks.push([...items]);
    return fake.quickPickAnswer?.(items);
  },
  async showTextDocument(document: unknown) {
    fake.shownDocuments.push(document);
    return {};
  },
};

export const commands = {
  registerCommand(id: string, handler: (...args: unknown[]) => unknown) {
    if (fake.commands.has(id)) {
      throw new Error(`command '${id}' already exists`); // as VS Code does
    }
    fake.commands.set(id, handler);
    return new Disposable(() => fake.commands.delete(id));
  },
  async executeCommand(id: string, ...args: unknown[]) {
    fake.executed.push([id, ...args]);
    return fake.commands.get(id)?.(...args);
  },
};

/** A settings object for section `codeswift`, read from `fake.settings` (dotted keys). */
function configuration(section?: string) {
  const prefix = section ? `${section}.` : "";
  return {
    get<T>(key: string, defaultValue?: T): T | undefined {
      const full = prefix + key;
      return full in fake.settings ? (fake.settings[full] as T) : defaultValue;
    },
    has(key: string): boolean {
      return prefix + key in fake.settings;
    },
  };
}

export const workspace = {
  getConfiguration: configuration,
  onDidChangeConfiguration(listener: Listener<unknown>) {
    fake.configListeners.push(listener);
    return new Disposable(() => {
      fake.configListeners = fake.configListeners.filter((l) => l !== listener);
    });
  },
  onDidGrantWorkspaceTrust(listener: Listener<void>) {
    fake.trustListeners.push(listener);
    return new Disposable();
  },
  async openTextDocument(options: { language?: string; content?: string }) {
    fake.documents.push(options);
    return { ...options, uri: { scheme: "untitled" } };
  },
  get workspaceFolders() {
    return fake.workspaceFolders;
  },
};

/** A configuration change of the dotted `keys` (and so of every section above them). */
export function changeEvent(...keys: string[]) {
  return {
    affectsConfiguration: (section: string) =>
      keys.some((key) => key === section || key.startsWith(`${section}.`)),
  };
}

/** Changes settings and tells the listeners, like the settings editor would. */
export async function changeSettings(values: Record<string, unknown>): Promise<void> {
  Object.assign(fake.settings, values);
  const event = changeEvent(...Object.keys(values));
  await Promise.all(fake.configListeners.map((listener) => listener(event)));
}
