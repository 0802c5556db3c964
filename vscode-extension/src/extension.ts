// Entry point: wires the output channel, status bar, commands and language client together.
import * as vscode from "vscode";
import { CodeswiftClient } from "./client";
import { registerCommands } from "./commands";
import { COMMANDS } from "./ids";
import { StatusView } from "./status";

/** What `activate` returns (other extensions and tests can wait for the first start). */
export interface CodeswiftApi {
  client: CodeswiftClient;
  started: Promise<void>;
}

let client: CodeswiftClient | undefined;

export function activate(context: vscode.ExtensionContext): CodeswiftApi {
  // {log: true}: timestamped, level-filtered lines; the client's and the server's logs go here
  const output = vscode.window.createOutputChannel("codeswift", { log: true });
  const status = new StatusView(COMMANDS.showMenu);
  const started = new CodeswiftClient(output, status);
  client = started;
  context.subscriptions.push(output, status, started);
  registerCommands(context, started, output);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => started.configurationChanged(event)),
    // trust makes the workspace's own pythonPath and model count (package.json `capabilities`)
    vscode.workspace.onDidGrantWorkspaceTrust(() => started.restart()),
  );
  // not awaited: the interpreter check may take seconds and must not hold up activation
  return { client: started, started: started.start() };
}

export async function deactivate(): Promise<void> {
  await client?.stop();
  client = undefined;
}
