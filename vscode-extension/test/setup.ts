// Loaded by mocha before the tests (.mocharc.json `require`): `vscode` exists only inside the
// editor, and the real `vscode-languageclient/node` needs it at import, so both are faked.
import Module from "module";
import * as fakeClient from "./fakes/languageclient";
import * as fakeVscode from "./fakes/vscode";

const fakes: Record<string, unknown> = {
  vscode: fakeVscode,
  "vscode-languageclient/node": fakeClient,
};

type Load = (request: string, parent: unknown, isMain: boolean) => unknown;
const loader = Module as unknown as { _load: Load };
const load = loader._load;
loader._load = function (request, parent, isMain) {
  return request in fakes ? fakes[request] : load.call(this, request, parent, isMain);
};
