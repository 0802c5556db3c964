// The extension's commands, the status bar menu, and the setup terminal.
import * as vscode from "vscode";
import { CodeswiftClient } from "./client";
import { COMMANDS, SERVER_COMMANDS, VSCODE_COMMANDS } from "./ids";
import { SETUP_ARGS } from "./server";
import { SECTION, serverSettings } from "./settings";

export interface MenuItem extends vscode.QuickPickItem {
  command: string;
}

/** The status bar item's menu, in display order. */
export const MENU: readonly MenuItem[] = [
  { label: "$(circle-slash) Toggle completions", command: COMMANDS.toggleEnable },
  { label: "$(debug-restart) Restart server", command: COMMANDS.restart },
  { label: "$(output) Show log", command: COMMANDS.showOutput },
  { label: "$(refresh) Reindex workspace", command: COMMANDS.reindexWorkspace },
  { label: "$(graph) Show stats", command: COMMANDS.showStats },
  { label: "$(cloud-download) Run setup", command: COMMANDS.runSetup, detail: "install the model" },
];

export function registerCommands(
  context: vscode.ExtensionContext,
  client: CodeswiftClient,
  output: vscode.LogOutputChannel,
): void {
  const handlers: Record<string, () => unknown> = {
    [COMMANDS.trigger]: () => vscode.commands.executeCommand(VSCODE_COMMANDS.triggerInline),
    [COMMANDS.toggleEnable]: () => toggle(client),
    [COMMANDS.restart]: () => client.restart(),
    [COMMANDS.reindexWorkspace]: () => reindex(client),
    [COMMANDS.showStats]: () => showStats(client),
    [COMMANDS.showOutput]: () => output.show(true),
    [COMMANDS.runSetup]: () => runSetup(client.python, serverSettings(config()).model),
    [COMMANDS.showMenu]: () => showMenu(),
  };
  for (const [id, handler] of Object.entries(handlers)) {
    context.subscriptions.push(vscode.commands.registerCommand(id, handler));
  }
}

/** Runs the menu item the user picks; resolves to its command id. */
export async function showMenu(): Promise<string | undefined> {
  const item = await vscode.window.showQuickPick(MENU, { title: "codeswift" });
  if (item !== undefined) {
    await vscode.commands.executeCommand(item.command);
  }
  return item?.command;
}

async function toggle(client: CodeswiftClient): Promise<void> {
  const result = (await client.executeServerCommand(SERVER_COMMANDS.toggle)) as
    { enabled?: unknown } | undefined;
  if (typeof result?.enabled === "boolean") {
    const state = result.enabled ? "on" : "off";
    void vscode.window.showInformationMessage(`codeswift: completions ${state}`);
  }
}

async function reindex(client: CodeswiftClient): Promise<void> {
  const running = client.running; // when not, executeServerCommand tells the user why
  await client.executeServerCommand(SERVER_COMMANDS.reindex);
  if (running) {
    void vscode.window.showInformationMessage("codeswift: reindexing the workspace");
  }
}

/** The server's statistics as a JSON document (it is too long for a message). */
async function showStats(client: CodeswiftClient): Promise<void> {
  const stats = await client.executeServerCommand(SERVER_COMMANDS.stats);
  if (stats === undefined) {
    return;
  }
  const content = JSON.stringify(stats, null, 2);
  const document = await vscode.workspace.openTextDocument({ language: "json", content });
  await vscode.window.showTextDocument(document, { preview: true });
}

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

/** Opens a terminal running `<python> -m daemon setup`: it downloads and converts the model,
 * with progress bars, which is why it is a terminal and not a background process. */
export function runSetup(python: string, model?: string): vscode.Terminal {
  const args = [...SETUP_ARGS, ...(model ? ["--model", model] : [])];
  const terminal = vscode.window.createTerminal({ name: "codeswift setup" });
  terminal.show();
  terminal.sendText(shellCommand(python, args));
  void vscode.window
    .showInformationMessage(
      "codeswift: restart the server once setup has finished.",
      "Restart server",
    )
    .then((choice) => choice && vscode.commands.executeCommand(COMMANDS.restart));
  return terminal;
}

/** A command line for the terminal's shell (POSIX shells; PowerShell on Windows). */
export function shellCommand(program: string, args: string[]): string {
  const words = [program, ...args].map(process.platform === "win32" ? quoteWindows : quotePosix);
  // PowerShell runs a quoted program only behind the call operator
  return process.platform === "win32" && words[0].startsWith('"')
    ? `& ${words.join(" ")}`
    : words.join(" ");
}

function quotePosix(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function quoteWindows(word: string): string {
  return /^[\w@%+=:,./\\-]+$/.test(word) ? word : `"${word.replace(/"/g, '`"')}"`;
}
