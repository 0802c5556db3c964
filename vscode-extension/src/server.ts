// How the server process is launched, and why it cannot be, found before launching it: a
// missing interpreter or package otherwise surfaces as the client's generic "couldn't create
// connection to server", which tells the user nothing they can act on.
import { execFile } from "child_process";
import { Executable, TransportKind } from "vscode-languageclient/node";

export const SERVER_ARGS = ["-m", "daemon", "serve"];
export const SETUP_ARGS = ["-m", "daemon", "setup"];
/** What `serve` imports first; importing it proves the package is installed in `python`. */
export const IMPORT_CHECK = "import daemon.cli, lsp.server";
export const CHECK_TIMEOUT_MS = 20_000;

export function serverOptions(python: string): Executable {
  return { command: python, args: [...SERVER_ARGS], transport: TransportKind.stdio };
}

export type ProblemKind = "python-missing" | "not-installed" | "timeout" | "broken";

export interface StartProblem {
  kind: ProblemKind;
  message: string; // one line, for `showErrorMessage`
  detail?: string; // for the log: what the check printed
}

/** The outcome of running a process, enough to tell the failures apart. */
export interface RunResult {
  spawnError?: string; // "ENOENT", "EACCES", ...: the program could not be started
  timedOut: boolean;
  exitCode: number | null;
  stderr: string;
}

export type Runner = (program: string, args: string[], timeoutMs: number) => Promise<RunResult>;

/** Runs `program` once, never rejecting: every failure is a value to diagnose. */
export const runProcess: Runner = (program, args, timeoutMs) =>
  new Promise((resolve) => {
    execFile(program, args, { timeout: timeoutMs, windowsHide: true }, (error, _stdout, stderr) => {
      const failure = error as (NodeJS.ErrnoException & { killed?: boolean }) | null;
      const spawnError = typeof failure?.code === "string" ? failure.code : undefined;
      resolve({
        spawnError,
        timedOut: failure?.killed === true && spawnError === undefined,
        exitCode: failure ? (typeof failure.code === "number" ? failure.code : null) : 0,
        stderr: String(stderr ?? ""),
      });
    });
  });

/** Why `python -m daemon serve` would fail to start, or undefined when it should start. */
export async function diagnose(
  python: string,
  run: Runner = runProcess,
  timeoutMs: number = CHECK_TIMEOUT_MS,
): Promise<StartProblem | undefined> {
  const result = await run(python, ["-c", IMPORT_CHECK], timeoutMs);
  const detail = result.stderr.trim() || undefined;
  if (result.spawnError !== undefined) {
    // ENOENT: no such file; EACCES: not executable (a folder, or a file without +x)
    return {
      kind: "python-missing",
      message: `codeswift: Python not found at ${python}. Set codeswift.pythonPath.`,
      detail: `${python}: ${result.spawnError}`,
    };
  }
  if (result.timedOut) {
    const seconds = Math.round(timeoutMs / 1000);
    return {
      kind: "timeout",
      message: `codeswift: ${python} did not import codeswift within ${seconds} s.`,
      detail,
    };
  }
  if (result.exitCode === 0) {
    return undefined;
  }
  if (/No module named '?(daemon|lsp)\b/.test(result.stderr)) {
    return {
      kind: "not-installed",
      message:
        `codeswift is not installed in ${python}: pip install -e <codeswift checkout> ` +
        `/ make setup (or set codeswift.pythonPath).`,
      detail,
    };
  }
  // installed, but something it imports is broken: the last line is the exception
  const lastLine = detail?.split("\n").pop() ?? `exit code ${result.exitCode}`;
  return {
    kind: "broken",
    message: `codeswift cannot start with ${python}: ${lastLine}`,
    detail,
  };
}
