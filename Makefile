# Two commands set up everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test check chromium wrk loadtest bench crash clean

DURATION ?= 60s
USERS ?= 50

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: $(VENV)/.installed
	$(BIN)/event-postback serve $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the browser tests (they are skipped without it).
chromium:
	command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's wrk for the benchmark.
wrk:
	command -v wrk >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

# Locust against a served instance on a temp database; fails over 1 % failed requests.
loadtest: $(VENV)/.installed-dev
	$(BIN)/python loadtests/run_loadtest.py --duration $(DURATION) --users $(USERS)

# The service against a bare Starlette endpoint; writes loadtests/results/bench-*.json.
bench: $(VENV)/.installed-dev wrk
	$(BIN)/python loadtests/bench.py $(BENCH_ARGS)

# kill -9 under load, restart, check every acknowledged event against the database.
CYCLES ?= 5
MODES ?= commit write-behind
FLUSH_MS ?= 5 200
crash: $(VENV)/.installed-dev
	$(BIN)/python loadtests/crash.py --cycles $(CYCLES) --modes $(MODES) --flush-ms $(FLUSH_MS) $(CRASH_ARGS)

check: $(VENV)/.installed-dev
	$(BIN)/ruff check app actors storage tests loadtests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
