// Checks a built .vsix (a zip): it holds the bundle and a manifest whose `main` is that bundle,
// and no node_modules or sources. Reads the zip itself, so it needs nothing but Node.
// Usage: node scripts/check-vsix.mjs codeswift-0.1.0.vsix
import { readFileSync, statSync } from "node:fs";
import { inflateRawSync } from "node:zlib";

const REQUIRED = [
  "extension/dist/extension.js",
  "extension/package.json",
  "extension.vsixmanifest",
];

/** The entries of a zip: name, sizes and a reader for the contents. */
function zipEntries(buffer) {
  let end = buffer.length - 22; // the end-of-central-directory record, found from the back
  while (end >= 0 && buffer.readUInt32LE(end) !== 0x06054b50) end -= 1;
  if (end < 0) throw new Error("not a zip file");
  const count = buffer.readUInt16LE(end + 10);
  let offset = buffer.readUInt32LE(end + 16);
  const entries = [];
  for (let i = 0; i < count; i += 1) {
    if (buffer.readUInt32LE(offset) !== 0x02014b50) throw new Error("bad central directory");
    const method = buffer.readUInt16LE(offset + 10);
    const packed = buffer.readUInt32LE(offset + 20);
    const size = buffer.readUInt32LE(offset + 24);
    const nameLength = buffer.readUInt16LE(offset + 28);
    const extraLength = buffer.readUInt16LE(offset + 30);
    const commentLength = buffer.readUInt16LE(offset + 32);
    const local = buffer.readUInt32LE(offset + 42);
    const name = buffer.toString("utf8", offset + 46, offset + 46 + nameLength);
    const read = () => {
      const start = local + 30 + buffer.readUInt16LE(local + 26) + buffer.readUInt16LE(local + 28);
      const data = buffer.subarray(start, start + packed);
      return method === 8 ? inflateRawSync(data) : data;
    };
    entries.push({ name, size, read });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

const file = process.argv[2] ?? "codeswift-0.1.0.vsix";
const entries = zipEntries(readFileSync(file));
const byName = new Map(entries.map((e) => [e.name, e]));
const problems = [];
for (const name of REQUIRED) {
  if (!byName.has(name)) problems.push(`missing ${name}`);
}
for (const { name } of entries) {
  if (name.includes("node_modules/") || /^extension\/(src|test|out|scripts|e2e)\//.test(name)) {
    problems.push(`unexpected ${name}`);
  }
}
const packaged = byName.get("extension/package.json");
if (packaged) {
  const manifest = JSON.parse(packaged.read().toString("utf8"));
  if (manifest.main !== "./dist/extension.js") problems.push(`main is ${manifest.main}`);
  if (
    `${manifest.publisher}.${manifest.name}@${manifest.version}` !== "codeswift.codeswift@0.1.0"
  ) {
    problems.push(`manifest is ${manifest.publisher}.${manifest.name}@${manifest.version}`);
  }
}
const bundle = byName.get("extension/dist/extension.js");
if (bundle && !/require\("vscode"\)/.test(bundle.read().toString("utf8"))) {
  problems.push("the bundle does not load vscode from the host (is it external?)");
}
console.log(`${file}: ${(statSync(file).size / 1024).toFixed(1)} KiB, ${entries.length} files`);
for (const { name, size } of entries) console.log(`  ${name} (${size} bytes)`);
if (problems.length) {
  console.error(`${file} is not right:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log("vsix check: ok");
