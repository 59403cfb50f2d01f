# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint typecheck pytest bench dist clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## Run the nightly flow once on the embedded default (SQLite app DB, ephemeral Prefect).
run: $(STAMP)
	$(VENV)/bin/jobctl db upgrade
	$(VENV)/bin/alembic upgrade head
	$(VENV)/bin/jobctl nightly

## Everything: lint, format check, types, and the whole test suite on real PostgreSQL + SQLite.
test: $(STAMP) lint typecheck pytest

## The inner loop: lint, types, and the tests that need no real process faults or Prefect server.
test-fast: $(STAMP) lint typecheck
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		$(VENV)/bin/pytest $(XDIST) -m "not faults and not e2e" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Most tests wait on processes, signals and thresholds rather than the CPU: four workers, each test
# file in one of them (its session fixtures, e.g. a Prefect server, are per worker).
XDIST ?= -n 4 --dist loadfile

pytest: $(STAMP)
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		$(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

## Benchmarks (not tests): prints one table and writes bench/results/latest.json.
bench: $(STAMP)
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		$(PY) -m bench

## The library's wheel and sdist (dist/).
dist: $(STAMP)
	rm -rf dist && $(PY) -m build --quiet --outdir dist .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build jobs.sqlite3*
