# The two commands of README.md: `make run` (CES up on local defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PHASE := scripts/phase

.PHONY: install run up down status test lint typecheck unit integration e2e browser faults clean

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(INSTALLED)

install:
	@$(PHASE) install $(MAKE) -s $(INSTALLED)

run: install
	$(BIN)/cesdev up

down:
	$(BIN)/cesdev down

status:
	$(BIN)/cesdev stack status

test: install
	@$(PHASE) stack $(BIN)/cesdev stack up
	@$(PHASE) migrate $(BIN)/cesdev prepare
	@$(PHASE) lint sh -c '$(BIN)/ruff check ces cesdev tests benchmarks && $(BIN)/ruff format --check ces cesdev tests benchmarks'
	@$(PHASE) typecheck $(BIN)/mypy
	@$(PHASE) unit $(BIN)/pytest tests/unit -q
	@$(PHASE) integration $(BIN)/pytest tests/integration -q
	@$(PHASE) e2e $(BIN)/pytest tests/e2e -q
	@$(PHASE) browser sh -c 'scripts/ensure-chromium && $(BIN)/pytest tests/browser -q'
	@$(PHASE) faults $(BIN)/pytest tests/faults -q

# The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright; needs the stack). Skipped
# when chromium is missing and cannot be installed (not root), except in CI (CI=true) where that fails.
browser: install
	@$(PHASE) browser sh -c 'scripts/ensure-chromium && $(BIN)/pytest tests/browser -q'

# The fault suite alone. It starts its own private Kafka, PostgreSQL and Redis on free ports (never the
# shared stack) and stops and kills them under load; about 12 minutes on 2 cores.
faults: install
	@$(PHASE) faults $(BIN)/pytest tests/faults -q

clean: down
	-$(BIN)/cesdev stack purge
	rm -rf .stack $(VENV)
