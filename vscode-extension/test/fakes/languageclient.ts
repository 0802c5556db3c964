// A fake `vscode-languageclient/node`. The real one cannot load without VS Code (it subclasses
// `vscode.CompletionItem` at import), and what is tested here is what the extension asks of it.

export enum TransportKind {
  stdio = 0,
  ipc = 1,
  pipe = 2,
  socket = 3,
}

export enum State {
  Stopped = 1,
  Starting = 3,
  Running = 2,
}

export const ExecuteCommandRequest = { type: { method: "workspace/executeCommand" } };
export const DidChangeConfigurationNotification = {
  type: { method: "workspace/didChangeConfiguration" },
};

export class NotificationType<P = unknown> {
  readonly params?: P;
  constructor(public readonly method: string) {}
}

type Handler = (params: unknown) => unknown;

export class LanguageClient {
  static instances: LanguageClient[] = [];
  /** Makes the next `start()` reject with this error. */
  static failNextStart: Error | undefined;
  /** What `sendRequest` answers for `workspace/executeCommand`, by server command id. */
  static commandResults: Record<string, unknown> = {};

  running = false;
  stopped = 0;
  requests: Array<{ method: string; params: unknown }> = [];
  notifications: Array<{ method: string; params: unknown }> = [];
  handlers = new Map<string, Handler>();
  stateListeners: Array<(event: { oldState: State; newState: State }) => void> = [];

  constructor(
    public readonly id: string,
    public readonly name: string,
    public readonly serverOptions: unknown,
    public readonly clientOptions: Record<string, unknown> & {
      initializationOptions?: unknown;
      middleware?: Record<string, (...args: unknown[]) => unknown>;
      documentSelector?: unknown;
      outputChannel?: unknown;
    },
  ) {
    LanguageClient.instances.push(this);
  }

  static reset(): void {
    LanguageClient.instances = [];
    LanguageClient.failNextStart = undefined;
    LanguageClient.commandResults = {};
  }

  /** The initializationOptions the real client would send now. */
  initializationOptions(): unknown {
    const options = this.clientOptions.initializationOptions;
    return typeof options === "function" ? options() : options;
  }

  async start(): Promise<void> {
    const failure = LanguageClient.failNextStart;
    if (failure !== undefined) {
      LanguageClient.failNextStart = undefined;
      this.setState(State.Stopped);
      throw failure;
    }
    this.running = true;
    this.setState(State.Running);
  }

  async stop(): Promise<void> {
    this.stopped += 1;
    this.running = false;
    this.setState(State.Stopped);
  }

  needsStop(): boolean {
    return this.running;
  }

  isRunning(): boolean {
    return this.running;
  }

  onNotification(method: string, handler: Handler) {
    this.handlers.set(method, handler);
    return { dispose: () => this.handlers.delete(method) };
  }

  onDidChangeState(listener: (event: { oldState: State; newState: State }) => void) {
    this.stateListeners.push(listener);
    return { dispose: () => undefined };
  }

  async sendRequest(type: { method: string }, params: { command?: string }): Promise<unknown> {
    this.requests.push({ method: type.method, params });
    return params.command === undefined ? undefined : LanguageClient.commandResults[params.command];
  }

  async sendNotification(type: { method: string }, params: unknown): Promise<void> {
    this.notifications.push({ method: type.method, params });
  }

  /** The server sends a notification. */
  notify(method: string, params: unknown): void {
    this.handlers.get(method)?.(params);
  }

  /** The process dies for good (the real client gave up restarting it). */
  crash(): void {
    this.running = false;
    this.setState(State.Stopped);
  }

  private setState(newState: State): void {
    for (const listener of this.stateListeners) {
      listener({ oldState: State.Running, newState });
    }
  }
}
