# Two commands set up everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test check docs chromium wrk postgres loadtest bench crash chaos binary mutate clean

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

# Lint and strict types first: a change mypy refuses fails the test command too.
# Three pytest workers on two cores, one test file each at a time: most of the suite waits
# on served processes, sockets and PostgreSQL, so a third worker fills the cores' idle
# time (the whole suite 8:04 -> 6:34 on a 2-core VM; the slowest files start first,
# tests/schedule.py).
TEST_WORKERS ?= 3
test: check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The manual (docs/, mkdocs.yml) as a static site in site/; the suite builds it --strict.
docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict --site-dir site

# Debian's Chromium for the browser tests (they are skipped without it).
chromium:
	command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's wrk for the benchmark.
wrk:
	command -v wrk >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

# A throwaway PostgreSQL cluster (Debian's postgresql) in a temp dir on a free port, for
# trying the PostgreSQL store by hand: prints its URL and the command that stops it.
postgres:
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)
	$(PYTHON) -m tests.pg_cluster

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

# Two nodes on one throwaway PostgreSQL under load; node freezes and kill -9, PostgreSQL
# restarts and freezes, SIGHUP in turn; then every acknowledged event and owed postback is
# checked. Installs Debian's postgresql as `make postgres` does, without starting one.
CHAOS_SECONDS ?= 75
chaos: $(VENV)/.installed-dev
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)
	$(BIN)/python loadtests/chaos.py --duration $(CHAOS_SECONDS) $(CHAOS_ARGS)

# One executable holding the interpreter, the dependencies and the data files, built in a
# venv of its own so that nothing of the dev environment ends up inside it.
BINARY_VENV ?= .venv-binary
BINARY_BIN := $(BINARY_VENV)/bin

$(BINARY_VENV)/.installed: pyproject.toml
	rm -rf $(BINARY_VENV)
	$(PYTHON) -m venv $(BINARY_VENV)
	$(BINARY_BIN)/python -m pip install --quiet --upgrade pip
	$(BINARY_BIN)/python -m pip install --quiet '.[binary]'
	touch $@

# The package is reinstalled on every build (from a fresh build/), so the binary holds the
# tree as it is. uvicorn imports its loop, protocol and lifespan modules by name at run
# time, which PyInstaller's analysis cannot see: their submodules are collected whole.
binary: $(BINARY_VENV)/.installed
	rm -rf build dist/event-postback
	$(BINARY_BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	$(BINARY_BIN)/pyinstaller --noconfirm --clean --log-level WARN --onefile \
		--name event-postback --distpath dist --workpath build/pyinstaller \
		--specpath build/pyinstaller \
		--collect-data app --copy-metadata event-postback \
		--collect-submodules uvicorn --collect-submodules uvloop \
		--collect-submodules httptools \
		app/__main__.py
	@echo "built dist/event-postback"

# Mutation testing of the rules, actors, storage, event route, payloads and postbacks
# (see tests/MUTANTS.md); not part of `make test`. Results are kept in mutants/, so a run
# after a change retests only what changed. Niced, on at most MUTATE_JOBS cores; the
# tests' temp databases in memory (/dev/shm where there is one): thousands of runs of
# the same tests need no fsync to reach a disk.
MUTATE_JOBS ?= 2
MUTATE_TMPDIR ?= $(shell test -d /dev/shm && echo /dev/shm || echo $${TMPDIR:-/tmp})
mutate: $(VENV)/.installed-dev
	PATH="$(abspath $(BIN)):$$PATH" TMPDIR="$(MUTATE_TMPDIR)" \
		nice -n 10 $(BIN)/mutmut run --max-children $(MUTATE_JOBS)
	$(BIN)/mutmut results

check: $(VENV)/.installed-dev
	$(BIN)/ruff check app actors storage tests loadtests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(BINARY_VENV) build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache mutants
