# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint typecheck docs pytest browser screenshots bench matrix dist clean

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

## Everything: lint, format check, types, the docs (--strict), and the whole test suite on real
## PostgreSQL + SQLite, the Prefect UI in a real browser included.
test: $(STAMP) lint typecheck docs pytest

## The inner loop: lint, types, and the tests that need no real process faults or Prefect server.
test-fast: $(STAMP) lint typecheck
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		$(VENV)/bin/pytest $(XDIST) -m "not faults and not e2e and not ui" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## The documentation site (docs/, mkdocs.yml) into site/; a broken link or reference fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

## Debian's chromium and chromium-driver for the UI test: installed if missing, or a failure.
browser:
	@.ci/ensure-chromium

# Most tests wait on processes, signals and thresholds rather than the CPU: four workers, each test
# file in one of them (its session fixtures, e.g. a Prefect server, are per worker).
XDIST ?= -n 4 --dist loadfile --no-loadscope-reorder

pytest: $(STAMP) browser
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		$(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

## The pictures in docs/images, taken again by the UI test (a real server, deployment and run).
screenshots: $(STAMP) browser
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		UI_SCREENSHOTS_DIR="$(CURDIR)/docs/images" $(VENV)/bin/pytest -m ui -p no:cacheprovider \
		tests/e2e/test_ui.py $(PYTEST_ARGS)

## Benchmarks (not tests): prints one table and writes bench/results/latest.json.
bench: $(STAMP)
	@TEST_DATABASE_URL="$$(.ci/ensure-postgres)" && export TEST_DATABASE_URL && \
		$(PY) -m bench

## The compatibility matrix (noxfile.py; about 10 min per session), then the README's table from
## its results. One session: `make matrix NOX_ARGS="-s oldest"`.
matrix: $(STAMP)
	$(VENV)/bin/nox $(NOX_ARGS); status=$$?; $(PY) -m matrix.results >/dev/null; exit $$status

## The library's wheel and sdist (dist/).
dist: $(STAMP)
	rm -rf dist && $(PY) -m build --quiet --outdir dist .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build site jobs.sqlite3*
