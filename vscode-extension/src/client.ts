// The language client's life cycle: check, start, restart, forward settings and commands.
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  NotificationType,
  State,
} from "vscode-languageclient/node";
import { CURSOR_METHOD, CursorParams, CursorWatcher } from "./cursor";
import { alertNotRunning, alertServerError, alertStartProblem } from "./alerts";
import { diagnose, Runner, runProcess, serverOptions } from "./server";
import { PYTHON_PATH, SECTION, pythonPath, serverSettings } from "./settings";
import { STATUS_METHOD, ServerStatus, StatusView } from "./status";

export const CLIENT_ID = "codeswift"; // also the prefix of the `codeswift.trace.server` setting
const CURSOR_NOTIFICATION = new NotificationType<CursorParams>(CURSOR_METHOD);
export const DOCUMENT_SELECTOR = [{ scheme: "file" }, { scheme: "untitled" }];

export class CodeswiftClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  /** Start, stop and restart run one at a time: a new client must not register the server's
   * commands while the old one still holds them. */
  private queue: Promise<void> = Promise.resolve();
  /** The last server error shown as a message, so a repeated status does not repeat it. */
  private alerted: string | undefined;
  private lastState: string | undefined;
  private cursor: CursorWatcher | undefined;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly status: StatusView,
    private readonly check: Runner = runProcess,
  ) {}

  /** The interpreter the server runs with (now, from the settings). */
  get python(): string {
    return pythonPath(config(), vscode.workspace.workspaceFolders?.[0]?.uri.fsPath);
  }

  get running(): boolean {
    return this.client?.isRunning() ?? false;
  }

  start(): Promise<void> {
    return this.enqueue(() => this.launch());
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.shutdown());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.shutdown();
      await this.launch();
    });
  }

  /** `workspace/executeCommand`; undefined (after telling the user) when there is no server. */
  async executeServerCommand(command: string, ...args: unknown[]): Promise<unknown> {
    const client = this.client;
    if (client === undefined || !client.isRunning()) {
      void alertNotRunning();
      return undefined;
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
  }

  /** A new interpreter needs a new process; anything else the running server applies itself. */
  async configurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (event.affectsConfiguration(`${SECTION}.${PYTHON_PATH}`)) {
      this.output.info("codeswift.pythonPath changed: restarting the server");
      await this.restart();
    } else if (event.affectsConfiguration(SECTION)) {
      this.status.setEnabled(config().get("enable", true));
      // a server not running gets the settings as initializationOptions when it starts
      if (this.running) {
        await this.client?.sendNotification(DidChangeConfigurationNotification.type, {
          settings: serverSettings(config()),
        });
      }
    }
  }

  dispose(): void {
    void this.stop();
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async launch(): Promise<void> {
    const python = this.python;
    this.alerted = undefined;
    this.status.update({ state: "starting" });
    this.status.setEnabled(config().get("enable", true));
    this.output.info(`checking ${python}`);
    const problem = await diagnose(python, this.check);
    if (problem !== undefined) {
      this.output.error(problem.message + (problem.detail ? `\n${problem.detail}` : ""));
      this.status.error(problem.message);
      void alertStartProblem(problem);
      return;
    }
    const client = new LanguageClient(
      CLIENT_ID,
      "codeswift",
      serverOptions(python),
      this.options(),
    );
    client.onNotification(STATUS_METHOD, (status: ServerStatus) => this.onStatus(status));
    client.onDidChangeState((event) => {
      // the process died and the client gave up restarting it (not our own stop)
      if (event.newState === State.Stopped && this.client === client) {
        this.status.error("the server stopped; see the log");
      }
    });
    this.client = client;
    try {
      await client.start();
      this.cursor = new CursorWatcher((params) => this.cursorRests(client, params));
    } catch (error) {
      // the client has logged it and shown "couldn't create connection" with a log button
      this.status.error(`the server failed to start: ${String(error)}`);
    }
  }

  /** The server warms the place where the cursor rests (see cursor.ts). */
  private cursorRests(client: LanguageClient, params: CursorParams): void {
    if (this.client === client && client.isRunning() && config().get("enable", true)) {
      void client.sendNotification(CURSOR_NOTIFICATION, params);
    }
  }

  private async shutdown(): Promise<void> {
    this.cursor?.dispose();
    this.cursor = undefined;
    const client = this.client;
    this.client = undefined;
    if (client === undefined) {
      return;
    }
    try {
      if (client.needsStop()) {
        await client.stop(2000);
      }
    } catch (error) {
      this.output.warn(`stopping the server: ${String(error)}`);
    }
  }

  private options(): LanguageClientOptions {
    return {
      documentSelector: DOCUMENT_SELECTOR,
      outputChannel: this.output,
      traceOutputChannel: this.output,
      // read when the client (re)initializes, so a restart sends the current settings
      initializationOptions: () => serverSettings(config()),
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          // the setting is honoured here: the server only has its toggle command
          if (!config().get("enable", true)) {
            return null;
          }
          this.status.requestStarted();
          try {
            return await next(document, position, context, token);
          } finally {
            this.status.requestEnded();
          }
        },
        // The server's `textDocument/completion` fallback is for editors without inline
        // completion. VS Code has it, and would otherwise run the model a second time for
        // every suggest widget and list the same text there.
        provideCompletionItem: () => undefined,
      },
    };
  }

  private onStatus(status: ServerStatus): void {
    this.status.update(status);
    // VS Code asks once per place: what the user typed while the model loaded got no answer
    // then, and would get none until the next key. Ask again once the model is ready.
    const loaded = this.lastState === "loading" && status.state === "ready";
    this.lastState = status.state;
    if (loaded && vscode.window.activeTextEditor) {
      void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
    }
    if (status.state === "error") {
      const message = status.message ?? "the server reported an error";
      if (message !== this.alerted) {
        this.alerted = message;
        void alertServerError(message);
      }
    } else if (status.state === "ready") {
      this.alerted = undefined;
    }
  }
}

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}
