"""`jobctl check`'s checks, each OK and FAIL, on both backends, with registries built here."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.checks import CheckResult, run_checks
from prefect_nightly_jobs.registry import JobSpec, Registry


def registry(*specs: JobSpec) -> Registry:
    return Registry(specs or (JobSpec("alpha"), JobSpec("beta", depends_on=("alpha",))))


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def env_url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.mark.usefixtures("clean_env")
def test_everything_ok_on_a_migrated_database(
    engine: Engine, db_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", env_url(db_url))
    results = by_name(run_checks(registry))
    assert all(r.ok for r in results.values()), results
    assert results["jobs"].detail == "2 in order: alpha -> beta"
    assert results["migrations"].detail.startswith("at head ")
    assert "job_execution" in results["tables"].detail


@pytest.mark.usefixtures("clean_env")
def test_unmigrated_postgresql_fails_with_the_fix(
    nightly_pg_template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = testing.create_pg_database()  # empty: no migrations applied
    try:
        monkeypatch.setenv("DATABASE_URL", env_url(url))
        results = by_name(run_checks(registry))
    finally:
        testing.drop_pg_database(url)
    assert results["database"].ok
    assert not results["migrations"].ok
    assert "database at none" in results["migrations"].detail
    assert "run `jobctl db upgrade`" in results["migrations"].detail
    assert not results["tables"].ok and "job_execution" in results["tables"].detail


@pytest.mark.usefixtures("clean_env")
def test_unreachable_database_fails_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret-pw@127.0.0.1:1/app")
    results = by_name(run_checks(registry))
    assert not results["database"].ok
    assert "127.0.0.1:1" in results["database"].detail
    assert not results["migrations"].ok
    assert all("s3cret-pw" not in r.detail for r in results.values())


def test_embedded_sqlite_file_is_not_created_by_checking(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///fresh.sqlite3")
    results = by_name(run_checks(registry))
    assert all(r.ok for r in results.values()), results
    assert "created on first run" in results["database"].detail
    assert "migrates itself" in results["migrations"].detail
    assert not (clean_env / "fresh.sqlite3").exists()
    monkeypatch.setenv("DATABASE_URL", "sqlite:///no/such/dir/jobs.sqlite3")
    assert "does not exist: create it" in by_name(run_checks(registry))["database"].detail


@pytest.mark.usefixtures("clean_env")
def test_bad_settings_schedule_flags_and_graph_each_fail(
    sqlite_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", env_url(sqlite_url))
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", "61 * * * *")
    monkeypatch.setenv("ALPHA_ENABLED", "maybe")
    cyclic = Registry(
        [JobSpec("alpha", depends_on=("beta",)), JobSpec("beta", depends_on=("alpha",))]
    )
    results = by_name(run_checks(lambda: cyclic))
    assert not results["schedule"].ok and "'61 * * * *'" in results["schedule"].detail
    assert not results["enable flags"].ok and "ALPHA_ENABLED" in results["enable flags"].detail
    assert not results["jobs"].ok and "dependency cycle" in results["jobs"].detail
    assert results["database"].ok  # the rest is still checked

    monkeypatch.setenv("STALE_JOB_THRESHOLD_MS", "soon")
    results = by_name(run_checks(registry))
    assert not results["settings"].ok and "STALE_JOB_THRESHOLD_MS" in results["settings"].detail
    assert results["database"].detail == "not checked: fix the settings first"


@pytest.mark.usefixtures("clean_env")
def test_a_catalog_that_does_not_import_is_a_fail_line(
    sqlite_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", env_url(sqlite_url))

    def broken() -> Registry:
        raise ImportError("cannot import name 'sync_users' from 'jobs.catalog.sync_users'")

    results = by_name(run_checks(broken))
    assert not results["jobs"].ok
    assert "does not import: ImportError: cannot import name 'sync_users'" in results["jobs"].detail
    assert results["migrations"].ok
