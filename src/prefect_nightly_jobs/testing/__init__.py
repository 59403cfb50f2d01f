"""Helpers for testing jobs and the plugin itself: throwaway databases and one job run in Prefect.

Used by the pytest plugin (``prefect_nightly_jobs.testing.plugin``, installed with the package),
by this repository's own tests and by its benchmarks. Importing this module imports no Prefect.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, select
from sqlalchemy.engine import URL

from prefect_nightly_jobs import schema
from prefect_nightly_jobs.database import make_engine, normalize_url
from prefect_nightly_jobs.lease import Lease
from prefect_nightly_jobs.models import job_execution
from prefect_nightly_jobs.project import Project, find_project

TEST_DATABASE_ENV = "TEST_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> URL:
    """The PostgreSQL server that throwaway databases are created on (TEST_DATABASE_URL)."""
    return normalize_url(os.environ.get(TEST_DATABASE_ENV, DEFAULT_ADMIN_URL))


def admin_execute(sql: str) -> None:
    engine = make_engine(admin_url())
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def migrate(url: URL, project: Project | None = None) -> None:
    """The plugin's tables, then the project's own (its Alembic history, if it has one)."""
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        ini = project.alembic_ini if project is not None else None
        if ini is not None:
            cfg = Config(str(ini))
            with engine.connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
    finally:
        engine.dispose()


def create_pg_database(
    template: str | None = None, *, migrate_for: Project | None = None, migrated: bool = False
) -> URL:
    """A new database on the admin server, cloned from ``template`` or migrated (if asked)."""
    name = f"nightly_test_{uuid.uuid4().hex[:12]}"
    suffix = f' TEMPLATE "{template}"' if template else ""
    admin_execute(f'CREATE DATABASE "{name}"{suffix}')
    url = admin_url().set(database=name)
    if migrated or migrate_for is not None:
        migrate(url, migrate_for)
    return url


def drop_pg_database(url: URL) -> None:
    admin_execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def create_sqlite_database(
    directory: Path,
    template: Path | None = None,
    *,
    migrate_for: Project | None = None,
    migrated: bool = False,
) -> URL:
    path = directory / f"jobs_{uuid.uuid4().hex[:8]}.db"
    if template is not None:
        shutil.copyfile(template, path)
    url = normalize_url(f"sqlite:///{path}")
    if migrated or migrate_for is not None:
        migrate(url, migrate_for)
    return url


@contextmanager
def pg_database(*, migrated: bool = True) -> Iterator[URL]:
    """A fresh PostgreSQL database with the plugin's tables, dropped on exit."""
    url = create_pg_database(migrated=migrated)
    try:
        yield url
    finally:
        drop_pg_database(url)


@contextmanager
def sqlite_database() -> Iterator[URL]:
    """A SQLite file with the plugin's tables in a temporary directory, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="nightly-jobs-") as tmp:
        yield create_sqlite_database(Path(tmp), migrated=True)


class CheckoutCounter:
    """Counts connections checked out of an engine's pool and not yet returned."""

    def __init__(self, engine: Engine) -> None:
        self.out = 0
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *_: object) -> None:
        self.out += 1

    def _checkin(self, *_: object) -> None:
        self.out -= 1


@contextmanager
def counted_engine(url: URL, *, pool_size: int = 5) -> Iterator[tuple[Engine, CheckoutCounter]]:
    engine = make_engine(url, pool_size=pool_size)
    counter = CheckoutCounter(engine)
    try:
        yield engine, counter
    finally:
        engine.dispose()


def rows(engine: Engine, job_type: str) -> list[Any]:
    """Every execution row of ``job_type``, oldest first."""
    with engine.connect() as conn:
        found = list(
            conn.execute(
                select(job_execution)
                .where(job_execution.c.job_type == job_type)
                .order_by(job_execution.c.id)
            )
        )
        conn.rollback()
    return found


def as_if_dead(lease: Lease) -> Lease:
    """Make ``lease`` look like the lease of a process that died: on SQLite, where a live process
    proves its lease with a flock, drop that flock; everywhere, stop its heartbeat."""
    lease.stop_heartbeat()
    if lease._held is not None:
        lease._held.release()
    return lease


__all__ = [
    "CheckoutCounter",
    "admin_url",
    "as_if_dead",
    "counted_engine",
    "create_pg_database",
    "create_sqlite_database",
    "drop_pg_database",
    "find_project",
    "migrate",
    "pg_database",
    "rows",
    "sqlite_database",
]
