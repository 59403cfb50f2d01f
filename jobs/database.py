"""Engines for the application database, and the one place driver errors become ours."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from jobs.errors import ConfigurationError, DatabaseError
from jobs.settings import Settings, mask_url

SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 5
URL_HELP = "use postgresql://user:password@host:5432/dbname or sqlite:///path/to/file.db"


def _mask_unparsed(raw: str) -> str:
    """A URL too broken to parse, shown without whatever precedes its last "@" but the scheme:
    mask_url needs a "scheme://" to find the password, and "postgres//u:pw@h" has none."""
    head, at, tail = raw.rpartition("@")
    if not at:
        return mask_url(raw)
    scheme = re.match(r"[a-z0-9+.-]*:?/*", head, re.IGNORECASE)
    return f"{scheme.group(0) if scheme else ''}***@{tail}"


def normalize_url(raw: str) -> URL:
    """Parse DATABASE_URL; plain postgresql:// (or postgres://) means psycopg 3."""
    try:
        url = make_url(raw)
    except (exc.ArgumentError, ValueError):
        raise ConfigurationError(
            f"DATABASE_URL is not a valid database URL (got {_mask_unparsed(raw)!r}): {URL_HELP}"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend in {"postgresql", "postgres"} and driver in {"", "psycopg"}:
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in {"", "pysqlite"}:
        if url.database in (None, "", ":memory:"):
            raise ConfigurationError(
                "DATABASE_URL points to an in-memory SQLite database, which other processes "
                "cannot share: use sqlite:///path/to/file.db"
            )
        return url
    raise ConfigurationError(f"DATABASE_URL uses unsupported driver {url.drivername!r}: {URL_HELP}")


def describe_db_error(err: BaseException, url: URL | None = None) -> str:
    """One line for a driver error, password masked, without the SQL or the driver's hints."""
    original = err.orig if isinstance(err, exc.DBAPIError) and err.orig is not None else err
    first = str(original).strip().splitlines()[0] if str(original).strip() else type(err).__name__
    text = mask_url(first)
    if url is not None and url.password:
        text = text.replace(str(url.password), "***")
    return text


def translate(err: BaseException, url: URL | None = None) -> DatabaseError:
    where = f" at {url.render_as_string(hide_password=True)}" if url is not None else ""
    return DatabaseError(
        f"database unavailable{where}: {describe_db_error(err, url)} "
        "(check DATABASE_URL and that the server is running)"
    )


@contextlib.contextmanager
def translated_errors(url: URL | None = None) -> Iterator[None]:
    """Turn driver connection/operational errors into one DatabaseError, original as __cause__."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as err:
        raise translate(err, url) from err


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE below is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Invariant 2 on SQLite: the write lock is taken at BEGIN, so acquirers queue there
        # (inside busy_timeout) instead of both reading "nothing running" and racing to write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: URL | str, *, pool_size: int = 5) -> Engine:
    """An engine with the settings the lock relies on for this backend."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        # NullPool: a SQLite connection is cheap and must not be shared across forks.
        engine = create_engine(parsed, poolclass=NullPool)
        _configure_sqlite(engine)
        return engine
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # a restarted server leaves dead pooled connections behind
        pool_recycle=1800,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "application_name": "prefect-nightly-jobs",
        },
    )


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(normalize_url(settings.database_url.get_secret_value()))
