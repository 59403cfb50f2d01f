"""Throwaway databases for one benchmark: the plugin's own test helpers (created, migrated,
dropped), and the libpq form of a URL for the raw-psycopg floors.

Never the shared ``postgres`` database's tables: every measurement gets databases of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.testing import admin_execute, admin_url, pg_database, sqlite_database

__all__ = [
    "admin_execute",
    "admin_url",
    "engine_for",
    "libpq_conninfo",
    "pg_database",
    "sqlite_database",
]


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
