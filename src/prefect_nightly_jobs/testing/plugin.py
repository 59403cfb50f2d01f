"""pytest fixtures for a project's jobs, installed with the plugin (the ``pytest11`` entry point).

``nightly_env`` gives a test a fresh database (the plugin's tables and the project's own, from its
migrations) on SQLite, and on PostgreSQL as well when TEST_DATABASE_URL names a server: the test
runs once per backend. DATABASE_URL points at that database and Prefect is a test server, so
``prefect_nightly_jobs.run_job("my_job")`` runs the job as production does, with its lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.engines import dispose_engines
from prefect_nightly_jobs.project import Project, find_project
from prefect_nightly_jobs.settings import get_settings


def _parametrized_by_the_test(metafunc: pytest.Metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a nightly database runs on SQLite, and on PostgreSQL when
    TEST_DATABASE_URL is set (unless the test chooses its backend itself)."""
    if "nightly_backend" in metafunc.fixturenames and not _parametrized_by_the_test(
        metafunc, "nightly_backend"
    ):
        backends = ["sqlite"]
        if os.environ.get(testing.TEST_DATABASE_ENV):
            backends.append("postgresql")
        metafunc.parametrize("nightly_backend", backends)


@pytest.fixture(scope="session")
def nightly_project(request: pytest.FixtureRequest) -> Project:
    """The project under test: the pyproject.toml of pytest's root directory (not of whatever
    directory a test has changed into when this is first asked for)."""
    return find_project(request.config.rootpath)


@pytest.fixture(scope="session")
def nightly_pg_template(nightly_project: Project) -> Iterator[str]:
    """A PostgreSQL database migrated once per session; each test clones it (about 0.1 s)."""
    url = testing.create_pg_database(migrate_for=nightly_project)
    assert url.database is not None
    yield url.database
    testing.drop_pg_database(url)


@pytest.fixture(scope="session")
def nightly_sqlite_template(
    nightly_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    directory = tmp_path_factory.mktemp("nightly-sqlite-template")
    url = testing.create_sqlite_database(directory, migrate_for=nightly_project)
    assert url.database is not None
    return Path(url.database)


@pytest.fixture
def nightly_database_url(
    nightly_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[URL]:
    """A fresh, migrated database for this test on ``nightly_backend``."""
    if nightly_backend == "postgresql":
        template: str = request.getfixturevalue("nightly_pg_template")
        url = testing.create_pg_database(template=template)
        yield url
        testing.drop_pg_database(url)
    else:
        sqlite_template: Path = request.getfixturevalue("nightly_sqlite_template")
        yield testing.create_sqlite_database(tmp_path, template=sqlite_template)


@pytest.fixture(scope="session")
def nightly_prefect() -> Iterator[None]:
    """One Prefect test server (its own temporary database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness  # noqa: PLC0415 - only if used

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture
def nightly_env(
    nightly_prefect: None, nightly_database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> Iterator[URL]:
    """DATABASE_URL is this test's fresh database and Prefect a test server; yields the URL."""
    monkeypatch.setenv("DATABASE_URL", nightly_database_url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    dispose_engines()
    yield nightly_database_url
    dispose_engines()
    get_settings.cache_clear()
