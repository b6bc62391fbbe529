# Darkroom: `make run` starts the service, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT
export DARKROOM_PUBLIC_URL ?= http://localhost:$(PORT)
export DARKROOM_ENVIRONMENT ?= development
# Let Python keep compiled modules (some machines set PYTHONDONTWRITEBYTECODE): every test
# process, and every web and worker process the tests start, would otherwise compile our
# modules and pytest would rewrite the tests' asserts again each time.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test check lint fmt init clean bench screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

init: $(VENV)/.runtime  ## prepare the instance folder and the database
	$(BIN)/flask --app wsgi init

run: init  ## web + worker from the Procfile on http://localhost:$(PORT)
	@echo "Darkroom on http://localhost:$(PORT)  (API docs: http://localhost:$(PORT)/api/v1/docs)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) --procfile Procfile

# Three test processes, one test file each at a time (the browser files together, on one
# stack: tests/conftest.py): much of the suite waits on real servers and browsers, so this
# fits two cores well (plain `pytest` runs them one by one).
test: $(VENV)/.dev  ## the whole test suite
	$(BIN)/python -m pytest -n 3 --dist loadfile

# The loop to run before every commit: lint, format, types, and the in-process tests (no
# browser, no started web/worker processes; see the markers in pyproject.toml).
check: lint $(VENV)/.dev  ## ruff, format check, mypy and the fast tests (about a minute)
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -q -m "not e2e and not browser"

# The figures in docs/ come from wrk (Debian's package), installed here when it is missing and
# this is a root shell with apt-get; otherwise a Python load generator stands in, which
# takes CPU from the server and gives lower absolute figures.
bench: $(VENV)/.dev  ## measure speed and cost: docs/benchmarks.md and docs/bench-*.png (< 10 min)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1; } \
	  || echo "wrk is not installed: the Python load generator stands in"
	$(BIN)/python -m bench.run

screenshots: $(VENV)/.dev  ## docs/screenshots/*.png from a fresh stack in Chromium
	$(BIN)/python -m tests.make_screenshots

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
