"""Throwaway databases for one benchmark: created, migrated with jobs.schema.upgrade, dropped.

Never the shared ``postgres`` database's tables: every measurement gets databases of its own.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from jobs import schema
from jobs.database import make_engine, normalize_url

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> URL:
    return normalize_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL))


def admin_execute(sql: str) -> None:
    engine = make_engine(admin_url())
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def migrate(url: URL) -> None:
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()


@contextmanager
def pg_database(*, migrated: bool = True) -> Iterator[URL]:
    """A fresh PostgreSQL database (migrated to head unless told otherwise), dropped on exit."""
    name = f"jobs_bench_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    url = admin_url().set(database=name)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database() -> Iterator[URL]:
    """A migrated SQLite file in a temp directory, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as tmp:
        url = normalize_url(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(url)
        yield url


def libpq_conninfo(url: URL) -> str:
    """The URL as plain libpq wants it (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def engine_for(url: URL, *, pool_size: int = 5) -> Iterator[Engine]:
    engine = make_engine(url, pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()
