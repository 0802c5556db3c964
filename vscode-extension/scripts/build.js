// The esbuild bundle: one CommonJS file with vscode-languageclient inlined (so the .vsix needs
// no node_modules); `vscode` is left to the editor. Not minified: stack traces in the log stay
// readable. Run directly to build dist/extension.js; tests import `options` for their own copy.
const path = require("path");
const esbuild = require("esbuild");

const root = path.resolve(__dirname, "..");

function options(outfile = path.join(root, "dist", "extension.js")) {
  return {
    entryPoints: [path.join(root, "src", "extension.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node18", // VS Code 1.91's extension host runs Node 20
    external: ["vscode"],
    outfile,
    logLevel: "warning",
  };
}

module.exports = { options };

if (require.main === module) {
  const result = esbuild.buildSync({ ...options(), metafile: true });
  const [file, { bytes }] = Object.entries(result.metafile.outputs)[0];
  console.log(`${file}: ${(bytes / 1024).toFixed(1)} KiB`);
}
