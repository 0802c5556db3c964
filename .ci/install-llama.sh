#!/usr/bin/env bash
# llama-cpp-python for the lab's llama.cpp peers (`codeswift bench --methods llamacpp,...`).
# PyPI ships it as a source distribution: installing compiles llama.cpp (about 5 minutes on 2
# cores), tuned for the CPU it is built on. The built wheel is kept in the user cache, keyed by
# the version and the CPU's feature flags, so a second install on the same kind of machine
# takes seconds. The multimodal library (mtmd, ~23k lines of C++) is left out: the peers load
# text models only, and llama_cpp imports it only for image chat handlers. Usage:
# install-llama.sh PYTHON
set -euo pipefail

VERSION=0.3.36
BUILD_OPTIONS="-DLLAVA_BUILD=OFF"
PYTHON=${1:?usage: install-llama.sh PYTHON}

if "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '$VERSION')" 2>/dev/null; then
  echo "llama-cpp-python $VERSION already installed" >&2
  exit 0
fi
cpu_key=$( (grep -m1 '^flags' /proc/cpuinfo; echo "$BUILD_OPTIONS") | sha256sum | cut -c1-12)
cache=${CODESWIFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/codeswift}/wheels/llama-cpp-python-$VERSION-$cpu_key
wheel=$(ls "$cache"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)
if [[ -z $wheel ]]; then
  echo "building llama-cpp-python $VERSION from its sdist (about 5 minutes on 2 cores)" >&2
  started=$SECONDS
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  # no pip cache: a wheel pip built before, under other CMAKE_ARGS, would be taken as it is
  CMAKE_ARGS="${CMAKE_ARGS:-} $BUILD_OPTIONS" "$PYTHON" -m pip wheel --quiet --no-cache-dir --no-deps \
    --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -w "$scratch"
  mkdir -p "$cache"
  built=$(ls "$scratch"/llama_cpp_python-*.whl)
  # copy, then rename: an interrupted build never leaves a half-written wheel in the cache
  cp "$built" "$cache/.partial" && mv "$cache/.partial" "$cache/$(basename "$built")"
  wheel="$cache/$(basename "$built")"
  echo "built in $((SECONDS - started)) s, kept at $wheel" >&2
fi
"$PYTHON" -m pip install --quiet "$wheel"
