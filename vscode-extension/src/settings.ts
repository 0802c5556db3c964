// The `codeswift.*` settings, and the flat camelCase object the server reads them as (in
// `initializationOptions` and in `workspace/didChangeConfiguration`).
import * as os from "os";

/** The part of `vscode.WorkspaceConfiguration` used here (so tests can pass a plain object). */
export interface ConfigurationReader {
  get<T>(key: string, defaultValue: T): T;
}

export const SECTION = "codeswift";
/** Changing this setting restarts the server: it picks the process, not a server setting. */
export const PYTHON_PATH = "pythonPath";

/** What the server reads (lsp/settings.py); keys are its camelCase field names. */
export interface ServerSettings {
  enable: boolean;
  autoTrigger: boolean;
  debounceMs: number;
  maxNewTokens: number;
  multiline: string;
  timeoutMs: number;
  predictNext: boolean;
  model: string;
  device: string;
  dtype: string;
  indexInclude: string[];
  indexExclude: string[];
  indexSecrets: boolean;
  logLevel: string;
}

/** Defaults, the same as the server's, so an unset setting changes nothing there. */
export const DEFAULTS: Readonly<ServerSettings> = Object.freeze({
  enable: true,
  autoTrigger: true,
  debounceMs: 75,
  maxNewTokens: 64,
  multiline: "auto",
  timeoutMs: 12000,
  predictNext: true,
  // always sent, never left out: the server keeps a setting that a change leaves out, so an
  // emptied model setting would otherwise keep the old model
  model: "qwen2.5-coder-0.5b",
  device: "auto",
  dtype: "auto",
  indexInclude: [],
  indexExclude: [],
  indexSecrets: false,
  logLevel: "info",
});

/** The flat object sent to the server. */
export function serverSettings(config: ConfigurationReader): ServerSettings {
  return {
    enable: config.get("enable", DEFAULTS.enable),
    autoTrigger: config.get("autoTrigger", DEFAULTS.autoTrigger),
    // the server wants whole numbers; the settings editor lets 75.5 through
    debounceMs: Math.round(config.get("debounceMs", DEFAULTS.debounceMs)),
    maxNewTokens: Math.round(config.get("maxNewTokens", DEFAULTS.maxNewTokens)),
    multiline: config.get("multiline", DEFAULTS.multiline),
    timeoutMs: Math.round(config.get("timeoutMs", DEFAULTS.timeoutMs)),
    predictNext: config.get("predictNext", DEFAULTS.predictNext),
    model: config.get("model", DEFAULTS.model).trim() || DEFAULTS.model,
    device: config.get("device", DEFAULTS.device),
    dtype: config.get("dtype", DEFAULTS.dtype),
    indexInclude: strings(config.get<unknown>("index.include", [])),
    indexExclude: strings(config.get<unknown>("index.exclude", [])),
    indexSecrets: config.get("index.secrets", DEFAULTS.indexSecrets),
    logLevel: config.get("logLevel", DEFAULTS.logLevel),
  };
}

/**
 * The Python interpreter that runs the server: the setting (with `~` and `${workspaceFolder}`
 * expanded), or `python3` (`python` on Windows) from PATH when it is empty.
 */
export function pythonPath(config: ConfigurationReader, workspaceFolder?: string): string {
  let path = config.get(PYTHON_PATH, "").trim();
  if (!path) {
    return process.platform === "win32" ? "python" : "python3";
  }
  if (path === "~" || path.startsWith("~/")) {
    path = os.homedir() + path.slice(1);
  }
  if (workspaceFolder !== undefined) {
    path = path.split("${workspaceFolder}").join(workspaceFolder);
  }
  return path;
}

/** A string array from a setting a user may have hand-edited into something else. */
function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}
