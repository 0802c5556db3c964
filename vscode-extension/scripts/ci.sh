#!/usr/bin/env bash
# The VS Code extension's CI, from a clean checkout with only Node 20+ and npm: clean install,
# type check, unit tests, package (+ check of the .vsix). Prints each step's time. `make test`
# calls it again after CI's own extension stage: where no file it checks has changed since it
# last passed, it says so and stops (a stamp in node_modules, which `npm ci` starts afresh).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=node_modules/.codeswift-ci-passed
sources=$(find . \( -name node_modules -o -path ./out -o -path ./dist \) -prune -o \
  -type f ! -name '*.vsix' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [[ -f $stamp && $(cat "$stamp") == "$sources" && -f codeswift-0.1.0.vsix ]]; then
  echo "extension unchanged since its checks last passed (sources $sources): not run again"
  exit 0
fi

node -e 'if (+process.versions.node.split(".")[0] < 20) { console.error(`Node ${process.version}: need 20 or newer`); process.exit(1); }'
echo "node $(node --version), npm $(npm --version)"

now() { node -e 'process.stdout.write(String(Date.now()))'; }
elapsed() { node -e "process.stdout.write(((Date.now() - $1) / 1000).toFixed(1))"; }
total_start=$(now)
step() {
  local name=$1
  shift
  echo "==> $name: $*"
  local start
  start=$(now)
  "$@"
  echo "<== $name: $(elapsed "$start") s"
}

step install npm ci --no-audit --no-fund
step lint npm run lint
step test npm test
step package npm run package
echo "$sources" > "$stamp"
echo "ok: codeswift-0.1.0.vsix, $(elapsed "$total_start") s in all"
