"""Throwaway databases for tests: PostgreSQL databases cloned from a migrated template, and SQLite
files copied from a migrated template file. Used by conftest and by child processes alike."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from jobs import schema
from jobs.database import make_engine, normalize_url
from jobs.lease import Lease

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> URL:
    return normalize_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL))


def _admin_execute(sql: str) -> None:
    engine = make_engine(admin_url())
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def create_pg_database(template: str | None = None, *, migrate: bool = False) -> URL:
    name = f"jobs_test_{uuid.uuid4().hex[:12]}"
    suffix = f' TEMPLATE "{template}"' if template else ""
    _admin_execute(f'CREATE DATABASE "{name}"{suffix}')
    url = admin_url().set(database=name)
    if migrate:
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()
    return url


def drop_pg_database(url: URL) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def create_sqlite_database(
    directory: Path, template: Path | None = None, *, migrate: bool = False
) -> URL:
    path = directory / f"jobs_{uuid.uuid4().hex[:8]}.db"
    if template is not None:
        shutil.copyfile(template, path)
    url = normalize_url(f"sqlite:///{path}")
    if migrate:
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()
    return url


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
def counted_engine(url: URL) -> Iterator[tuple[Engine, CheckoutCounter]]:
    engine = make_engine(url)
    counter = CheckoutCounter(engine)
    try:
        yield engine, counter
    finally:
        engine.dispose()


def as_if_dead(lease: Lease) -> Lease:
    """Make ``lease`` look like the lease of a process that died: on SQLite, where a live process
    proves its lease with a flock, drop that flock; everywhere, stop its heartbeat."""
    lease.stop_heartbeat()
    if lease._held is not None:
        lease._held.release()
    return lease
