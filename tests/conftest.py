"""Shared fixtures: real PostgreSQL and real SQLite files, one fresh migrated database per test.

Built on the plugin's own test helpers and pytest plugin (``prefect_nightly_jobs.testing``), which
every project that installs the plugin gets too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing

BACKENDS = ["postgresql", "sqlite"]


@pytest.fixture
def pg_url(nightly_pg_template: str) -> Iterator[URL]:
    url = testing.create_pg_database(template=nightly_pg_template)
    yield url
    testing.drop_pg_database(url)


@pytest.fixture
def sqlite_url(nightly_sqlite_template: Path, tmp_path: Path) -> URL:
    return testing.create_sqlite_database(tmp_path, template=nightly_sqlite_template)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> URL:
    """A fresh migrated database on the parametrized backend."""
    name = "pg_url" if backend == "postgresql" else "sqlite_url"
    url: URL = request.getfixturevalue(name)
    return url


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> URL:
    """A fresh database with no table at all (for migration tests)."""
    if backend == "sqlite":
        return testing.create_sqlite_database(tmp_path)
    url = testing.create_pg_database()
    request.addfinalizer(lambda: testing.drop_pg_database(url))
    return url


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    """An engine on the test's database; fails the test if any pooled connection leaks."""
    with testing.counted_engine(db_url) as (eng, counter):
        yield eng
        assert counter.out == 0, f"{counter.out} connection(s) still checked out after the test"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No project variables from the outer environment, and a cwd without a .env file."""
    for name in list(os.environ):
        if name.endswith("_ENABLED") or name in {
            "DATABASE_URL",
            "STALE_JOB_THRESHOLD_MS",
            "JOB_HEARTBEAT_INTERVAL_MS",
            "SYNC_CRON_SCHEDULE",
            "SYNC_CRON_TIMEZONE",
            "MAX_PARALLEL_JOBS",
            "RECONCILE_INTERVAL_SECONDS",
            "JOB_DISPATCH",
        }:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def prefect_harness(nightly_prefect: None) -> None:
    """One Prefect test server for the whole session (the plugin's fixture)."""


@pytest.fixture
def job_env(
    prefect_harness: None, db_url: URL, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[URL]:
    """Jobs run against the test's database, with a short staleness threshold; the process-wide
    engine is fresh and must not leak a connection."""
    from prefect_nightly_jobs import engines
    from prefect_nightly_jobs.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", db_url.render_as_string(hide_password=False))
    monkeypatch.setenv("STALE_JOB_THRESHOLD_MS", "2000")
    get_settings.cache_clear()
    engines.dispose_engines()
    counter = testing.CheckoutCounter(engines.shared_engine())
    yield db_url
    out = counter.out
    engines.dispose_engines()
    get_settings.cache_clear()
    assert out == 0, f"{out} connection(s) of the jobs engine still checked out after the test"


# The files that take minutes (a Prefect server, a wheel, a browser) start first, so that under
# `--dist loadfile` the many short files fill in around them instead of one long file running
# alone at the end. pytest-xdist would otherwise order files by their number of tests.
_SLOW_FIRST = ("e2e", "faults")  # the UI test is e2e too


def _rank(item: pytest.Item) -> int:
    return next(
        (rank for rank, mark in enumerate(_SLOW_FIRST) if item.get_closest_marker(mark)),
        len(_SLOW_FIRST),
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each file's tests keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Captured output that is not valid UTF-8 (a test of undecodable messages logs some) is
    escaped: pytest-xdist must send every report between processes as UTF-8."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [
        (name, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for name, text in report.sections
    ]
