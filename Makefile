# The README's two commands: `make run` and `make test`. Both set up .venv on first use.
# `make stack` (minutes, root) proves the Dockerfile and docker-compose.yml: docs/deploy.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench stack stack-down clean

$(STAMP): pyproject.toml devtools/pyproject.toml
	$(PYTHON) scripts/check_python.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./devtools
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/drip run

test: $(STAMP)
	sh scripts/ensure-chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy drip
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy drip
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

stack: $(STAMP)
	bash stack/run.sh

stack-down:
	bash stack/run.sh down

clean: stack-down
	rm -rf $(VENV) var test-artifacts
