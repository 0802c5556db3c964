// The status bar item: what the server last said in `codeswift/status`, plus a spinner while
// this client waits for a completion.
import * as vscode from "vscode";

export const STATUS_METHOD = "codeswift/status";

/** The params of `codeswift/status` (the server may add more fields). */
export interface ServerStatus {
  state: string; // starting | loading | indexing | ready | busy | error | disabled
  message?: string;
  model?: string;
  device?: string;
  dtype?: string;
  done?: number;
  total?: number;
  lastLatencyMs?: number | null;
  acceptRate?: number | null;
}

export interface StatusLook {
  text: string;
  tooltip: string;
  error: boolean;
}

const SPIN = "$(sync~spin)";

/** The item's look for a status; `waiting` is the number of completion requests in flight. */
export function describe(status: ServerStatus, waiting = 0): StatusLook {
  const device = status.device ? ` (${status.device})` : "";
  let text: string;
  switch (status.state) {
    case "starting":
      text = `${SPIN} codeswift: starting…`;
      break;
    case "loading":
      text = `${SPIN} codeswift: loading…`;
      break;
    case "indexing":
      text =
        typeof status.done === "number" && typeof status.total === "number"
          ? `${SPIN} codeswift: indexing ${status.done}/${status.total}`
          : `${SPIN} codeswift: indexing…`;
      break;
    case "ready":
      text = waiting > 0 ? `${SPIN} codeswift${device}` : `$(check) codeswift${device}`;
      break;
    case "busy":
      text = `${SPIN} codeswift${device}`;
      break;
    case "error":
      text = "$(error) codeswift";
      break;
    case "disabled":
      text = "$(circle-slash) codeswift";
      break;
    default:
      text = `$(question) codeswift: ${status.state}`;
  }
  return { text, tooltip: tooltip(status), error: status.state === "error" };
}

function tooltip(status: ServerStatus): string {
  const lines = [`codeswift: ${status.state}`];
  if (status.message) {
    lines.push(status.message);
  }
  if (status.state === "disabled") {
    lines.push("Completions are off.");
  }
  if (status.model) {
    const how = [status.device, status.dtype].filter(Boolean).join(", ");
    lines.push(`Model: ${status.model}${how ? ` (${how})` : ""}`);
  }
  if (typeof status.lastLatencyMs === "number") {
    lines.push(`Last completion: ${Math.round(status.lastLatencyMs)} ms`);
  }
  if (typeof status.acceptRate === "number") {
    lines.push(`Accepted: ${Math.round(status.acceptRate * 100)}%`);
  }
  lines.push("Click for codeswift actions.");
  return lines.join("\n");
}

/** Owns the status bar item; `command` is what a click runs. */
export class StatusView implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private status: ServerStatus = { state: "starting" };
  private waiting = 0;
  private enabled = true;

  constructor(command: string) {
    this.item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
    this.item.name = "codeswift";
    this.item.command = command;
    this.render();
    this.item.show();
  }

  get current(): ServerStatus {
    return this.status;
  }

  update(status: ServerStatus): void {
    this.status = status;
    this.render();
  }

  /** A client-side failure (no server to report it), shown like the server's own errors. */
  error(message: string): void {
    this.update({ state: "error", message });
  }

  /** The `codeswift.enable` setting: when off, a ready server is shown as disabled, because
   * the client asks it for nothing. */
  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  requestStarted(): void {
    this.waiting += 1;
    this.render();
  }

  requestEnded(): void {
    this.waiting = Math.max(0, this.waiting - 1);
    this.render();
  }

  dispose(): void {
    this.item.dispose();
  }

  private render(): void {
    const offBySetting = !this.enabled && ["ready", "busy"].includes(this.status.state);
    const shown = offBySetting
      ? { ...this.status, state: "disabled", message: "codeswift.enable is off" }
      : this.status;
    const look = describe(shown, this.waiting);
    this.item.text = look.text;
    this.item.tooltip = look.tooltip;
    this.item.backgroundColor = look.error
      ? new vscode.ThemeColor("statusBarItem.errorBackground")
      : undefined;
  }
}
