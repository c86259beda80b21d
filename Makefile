# The README's two commands: `make run` and `make test`. Both set up .venv on first use.
# `make stack` (minutes, root) proves the Dockerfile and docker-compose.yml: docs/deploy.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench faults stack stack-down clean

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

# Small defaults that finish in a few minutes; `python -m bench --help` for the full sizes.
bench: $(STAMP)
	@command -v wrk >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y wrk; \
		else echo "make bench needs wrk: run 'sudo apt-get install wrk' (or as root: make bench)"; exit 1; fi; }
	$(BIN)/python -m bench all

# Real processes, real faults (a few minutes per experiment); see docs/guarantees.md.
faults: $(STAMP)
	$(BIN)/python -m faults

stack: $(STAMP)
	bash stack/run.sh

stack-down:
	bash stack/run.sh down

clean: stack-down
	rm -rf $(VENV) var test-artifacts
