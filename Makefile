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

# The web pages' tests drive a real browser: scripts/chromium.sh installs Debian's Chromium when
# absent (as root); without it, and outside CI, those tests are skipped and say why.
test: $(STAMP)
	@scripts/chromium.sh >/dev/null || echo "make test: no Chromium: the web pages' browser tests will be skipped" >&2
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/encd demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check encd ledger api tests bench
	$(BIN)/ruff format --check encd ledger api tests bench

fmt: $(STAMP)
	$(BIN)/ruff format encd ledger api tests bench
	$(BIN)/ruff check --fix encd ledger api tests bench

typecheck: $(STAMP)
	$(BIN)/mypy encd ledger api bench

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

# Benchmarks against the machine's own limits (issue 6, docs/benchmarks.md): bench/results.json
# and docs/benchmarks.md.  `bench` takes a few minutes (a 20,000-event ledger); `bench-full`
# builds a 1,000,000-event ledger (tens of minutes).  BENCH_ARGS passes options to bench.run.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

.PHONY: bench bench-full
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --mode quick --profile $(BENCH_ARGS)

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --mode full $(BENCH_ARGS)
