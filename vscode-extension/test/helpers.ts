// Shared test set-up: stand-in Python interpreters and an activated extension.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LanguageClient } from "./fakes/languageclient";
import * as vscode from "./fakes/vscode";
import { activate, CodeswiftApi, deactivate } from "../src/extension";

const scratch: string[] = [];
// a root hook: the stand-in interpreters' folders go when the run ends
after(() => {
  for (const dir of scratch.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A stand-in interpreter: a shell script that prints `stderr` and exits with `code`. */
export function fakePython(name: string, code: number, stderr = "", sleepS = 0): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeswift-test-"));
  scratch.push(dir);
  const file = path.join(dir, name);
  const lines = ["#!/bin/sh"];
  // exec: a child `sleep` would keep the pipes open after the script is killed
  if (sleepS) lines.push(`exec sleep ${sleepS}`);
  if (stderr) lines.push(`printf '%s\\n' '${stderr.replace(/'/g, `'\\''`)}' >&2`);
  lines.push(`exit ${code}`);
  fs.writeFileSync(file, lines.join("\n") + "\n", { mode: 0o755 });
  return file;
}

/** An interpreter that has codeswift installed, as far as the start check can tell. */
export const goodPython = (): string => fakePython("python", 0);

export const MODULE_MISSING =
  'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n' +
  "ModuleNotFoundError: No module named 'daemon'";

export interface Activated {
  api: CodeswiftApi;
  context: { subscriptions: Array<{ dispose(): unknown }> };
  editor: vscode.FakeState;
}

/** Fresh fakes, `settings` applied, `prepare` run, the extension activated and its first start finished. */
export async function activateWith(
  settings: Record<string, unknown>,
  prepare: (editor: vscode.FakeState) => void = () => undefined,
): Promise<Activated> {
  const editor = vscode.reset();
  LanguageClient.reset();
  Object.assign(editor.settings, settings);
  prepare(editor);
  const context = { subscriptions: [] as Array<{ dispose(): unknown }> };
  const api = activate(context as never);
  await api.started;
  await settle();
  return { api, context, editor };
}

export async function deactivateAll(activated: Activated | undefined): Promise<void> {
  await deactivate();
  for (const disposable of activated?.context.subscriptions ?? []) {
    disposable.dispose();
  }
}

/** The client of the latest start. */
export function lastClient(): LanguageClient {
  const client = LanguageClient.instances[LanguageClient.instances.length - 1];
  if (client === undefined) {
    throw new Error("no LanguageClient was created");
  }
  return client;
}

/** Lets pending promise callbacks (message buttons, command handlers) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export const skipOnWindows = process.platform === "win32" ? it.skip : it;
