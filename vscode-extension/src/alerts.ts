// Error messages a user can act on: every one has buttons that run the fix (or show the log).
import * as vscode from "vscode";
import { COMMANDS, VSCODE_COMMANDS } from "./ids";
import { SECTION, PYTHON_PATH } from "./settings";
import { StartProblem } from "./server";

export const OPEN_LOG = "Open log";
export const RUN_SETUP = "Run setup";
export const OPEN_SETTINGS = "Open settings";
export const RESTART = "Restart server";

/** What each button runs: commands, so an alert needs no reference to the client. */
const ACTIONS: Record<string, [string, ...unknown[]]> = {
  [OPEN_LOG]: [COMMANDS.showOutput],
  [RUN_SETUP]: [COMMANDS.runSetup],
  [OPEN_SETTINGS]: [VSCODE_COMMANDS.openSettings, `${SECTION}.${PYTHON_PATH}`],
  [RESTART]: [COMMANDS.restart],
};

/** Shows `message` with `buttons`; resolves once the chosen action (if any) has been started. */
export async function alert(message: string, buttons: string[]): Promise<string | undefined> {
  const choice = await vscode.window.showErrorMessage(message, ...buttons);
  const action = choice === undefined ? undefined : ACTIONS[choice];
  if (action !== undefined) {
    await vscode.commands.executeCommand(...action);
  }
  return choice;
}

/** The server cannot be started; the buttons offer what can fix that kind of problem. */
export function alertStartProblem(problem: StartProblem): Promise<string | undefined> {
  switch (problem.kind) {
    case "timeout":
      return alert(problem.message, [RESTART, OPEN_LOG]);
    default:
      // "Run setup" cannot help here: setup is part of the package that failed to import,
      // and it installs the model, not the package's own dependencies
      return alert(problem.message, [OPEN_SETTINGS, OPEN_LOG]);
  }
}

/** The server runs but reported `error` (typically: the model is not set up yet). */
export function alertServerError(message: string): Promise<string | undefined> {
  return alert(`codeswift: ${message}`, [RUN_SETUP, OPEN_LOG]);
}

/** A command needs the server, which is not running. */
export function alertNotRunning(): Promise<string | undefined> {
  return alert("codeswift: the server is not running.", [RESTART, OPEN_LOG]);
}
