// Command ids. The client's own ids must differ from the server's: vscode-languageclient
// registers every id in the server's `executeCommandProvider` as a VS Code command itself, and
// a second registration of the same id throws.

/** Commands this extension registers (listed in package.json `contributes.commands`). */
export const COMMANDS = {
  trigger: "codeswift.trigger",
  toggleEnable: "codeswift.toggleEnable",
  restart: "codeswift.restart",
  reindexWorkspace: "codeswift.reindexWorkspace",
  showStats: "codeswift.showStats",
  showOutput: "codeswift.showOutput",
  runSetup: "codeswift.runSetup",
  showMenu: "codeswift.showMenu",
} as const;

/** The server's commands (`workspace/executeCommand`); the client proxies them. */
export const SERVER_COMMANDS = {
  accept: "codeswift.accept", // an inline item's `command`: runs after the user accepts it
  toggle: "codeswift.toggle", // -> {enabled: boolean}
  reindex: "codeswift.reindex",
  stats: "codeswift.stats", // -> a JSON object
} as const;

/** VS Code's own commands used here. */
export const VSCODE_COMMANDS = {
  triggerInline: "editor.action.inlineSuggest.trigger",
  openSettings: "workbench.action.openSettings",
} as const;
