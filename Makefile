# The README's commands. Everything lives in .venv/; nothing needs a server installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench setup clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## make run: set up, then run the hub on embedded defaults (SQLite in var/, embedded Redis)
run: $(STAMP)
	$(BIN)/hub run

## make test: set up, then run the whole test suite (uses REDIS_URL / DATABASE_URL when set)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## make bench: ingest and worker throughput as ratios against bare baselines
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var
