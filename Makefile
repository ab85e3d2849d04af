# One Makefile whose targets a newcomer can guess. Every target sets itself up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup test demo lint fmt typecheck check clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/encd demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check encd ledger api tests
	$(BIN)/ruff format --check encd ledger api tests

fmt: $(STAMP)
	$(BIN)/ruff format encd ledger api tests
	$(BIN)/ruff check --fix encd ledger api tests

typecheck: $(STAMP)
	$(BIN)/mypy encd ledger api

check: lint typecheck test

# The suite on a real PostgreSQL server: scripts/postgres.sh installs it when absent (as root,
# from the distribution's packages) and starts it on a local socket; it stays up afterwards
# (scripts/postgres.sh stop).
.PHONY: test-pg
test-pg: $(STAMP)
	url="$$(scripts/postgres.sh start)" && \
	ENCD_DATABASE_URL="$$(echo "$$url" | tail -n 1)" $(MAKE) test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
