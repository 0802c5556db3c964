// Where the cursor rests, told to the server (`codeswift/cursor`) before anything is asked: it
// prefills that place's prompt meanwhile, so the first completion in a file just opened or
// focused costs little more than a keystroke's.
import * as vscode from "vscode";

export const CURSOR_METHOD = "codeswift/cursor";
/** Quiet time after the last cursor move: typing moves it too, and asks for itself. */
export const REST_MS = 250;
const SCHEMES = new Set(["file", "untitled"]); // the client's document selector

export interface CursorParams {
  textDocument: { uri: string };
  position: { line: number; character: number };
}

export class CursorWatcher implements vscode.Disposable {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly send: (params: CursorParams) => void,
    private readonly restMs: number = REST_MS,
  ) {
    this.subscriptions = [
      vscode.window.onDidChangeActiveTextEditor((editor) => this.schedule(editor)),
      vscode.window.onDidChangeTextEditorSelection((event) => this.schedule(event.textEditor)),
    ];
    this.schedule(vscode.window.activeTextEditor);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const subscription of this.subscriptions) {
      subscription.dispose();
    }
  }

  private schedule(editor: vscode.TextEditor | undefined): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (editor === undefined || !SCHEMES.has(editor.document.uri.scheme)) {
      return;
    }
    this.timer = setTimeout(() => this.rest(editor), this.restMs);
  }

  private rest(editor: vscode.TextEditor): void {
    this.timer = undefined;
    if (editor !== vscode.window.activeTextEditor || !editor.selection.isEmpty) {
      return; // moved on, or a selection (not a place to complete at)
    }
    const { line, character } = editor.selection.active;
    this.send({
      textDocument: { uri: editor.document.uri.toString() },
      position: { line, character },
    });
  }
}
