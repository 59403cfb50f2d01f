"""Engines for the application database, and the one place driver errors become ours."""

from __future__ import annotations

import contextlib
import os
import re
import select
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url

from prefect_nightly_jobs.errors import ConfigurationError, DatabaseError
from prefect_nightly_jobs.settings import Settings, mask_url

SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 5
# A pooled connection idle for longer than this is pinged before use (a firewall or a network
# cut can drop it silently); a more recently used one only when its socket says the server hung up.
PING_AFTER_IDLE_S = 10.0
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


# Execution option that makes a SQLite transaction take the write lock at BEGIN (see below).
WRITE_LOCK = "jobs_write_lock"


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN below is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers (the lock, the job's session) take the write lock at BEGIN: acquirers queue
        # there instead of both reading "nothing running" and racing, and a job that reads then
        # writes never fails on a snapshot another writer made stale. Reads start deferred, so a
        # reader (`jobctl status`) never waits for a writer.
        immediate = conn.get_execution_options().get(WRITE_LOCK, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _never_across_fork(engine: Engine) -> None:
    """A forked child must not use its parent's pooled connections: it opens its own."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None  # never closed by the child
            raise exc.DisconnectionError("connection made in the parent process before a fork")


def _server_hung_up(dbapi_conn: Any) -> bool:
    """True when the server closed this idle connection (restart, pg_terminate_backend): it then
    sends a FATAL message and closes the socket, so there is something to read. A healthy idle
    connection has nothing to read. Costs a poll(), not a round trip."""
    try:
        fd = dbapi_conn.pgconn.socket
    except Exception:  # noqa: BLE001 - a closed or broken libpq connection has no socket
        return True
    if hasattr(select, "poll"):  # select.select() cannot watch descriptors above 1023
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _check_connections_on_checkout(engine: Engine) -> None:
    """Replace dead pooled connections before use, without pool_pre_ping's round trip per
    checkout (two of the lock's nine round trips, bench row 1).

    Raising DisconnectionError from a checkout listener makes the pool discard the connection and
    hand out a fresh one, as pool_pre_ping does when its ping fails.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None:  # a brand-new connection
            return
        if time.monotonic() - idle_since < PING_AFTER_IDLE_S and not _server_hung_up(dbapi_conn):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)  # the same ping as pool_pre_ping's
        except Exception as err:  # any failure means: do not use this connection
            raise exc.DisconnectionError(f"pooled connection is dead: {err}") from err
        if not alive:
            raise exc.DisconnectionError("pooled connection is dead")


def make_engine(
    url: URL | str,
    *,
    pool_size: int = 5,
    statement_timeout_ms: int | None = None,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> Engine:
    """An engine with the settings the lock relies on for this backend.

    ``statement_timeout_ms`` bounds every statement (and lock wait, and unacknowledged send) on
    PostgreSQL: the heartbeat's engine uses it so that no beat can hang.
    """
    parsed = normalize_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        # Pooled: closing the last connection to a WAL database checkpoints it (an fsync), which
        # would cost every acquisition milliseconds. check_same_thread off: SIGTERM handling rolls
        # back a job's connection from another thread (the library serializes calls on it).
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            connect_args={"check_same_thread": False},
        )
        _configure_sqlite(engine, busy_timeout_ms)
        _never_across_fork(engine)
        return engine
    connect_args: dict[str, Any] = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "application_name": "prefect-nightly-jobs",
        # A silent network partition must not block a heartbeat or a final status for the
        # kernel's default two hours: give up on a dead peer after about a minute.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if statement_timeout_ms is not None:
        timeout = int(statement_timeout_ms)
        connect_args["options"] = f"-c statement_timeout={timeout} -c lock_timeout={timeout}"
        connect_args["tcp_user_timeout"] = timeout
        connect_args["connect_timeout"] = max(1, min(PG_CONNECT_TIMEOUT_S, timeout // 1000))
    engine = create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    # A restarted server leaves dead pooled connections behind: replaced at checkout.
    _check_connections_on_checkout(engine)
    _never_across_fork(engine)
    return engine


def for_writing(engine: Engine) -> Engine:
    """The same engine (and pool) whose transactions, on SQLite, take the write lock at BEGIN.
    Other databases need no option: the engine itself (an option copy costs every job run)."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{WRITE_LOCK: True})


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for the lock's own writes; on SQLite it holds the write lock from BEGIN."""
    with for_writing(engine).begin() as conn:
        yield conn


def is_busy(err: BaseException) -> bool:
    """SQLite said another connection holds the write lock (past the busy timeout)."""
    orig = err.orig if isinstance(err, exc.DBAPIError) else None
    return getattr(orig, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextlib.contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for work that is one statement (a fenced UPDATE, a single INSERT).

    On PostgreSQL it runs in autocommit: the statement is its own transaction, one round trip
    instead of BEGIN, the statement and COMMIT. SQLite takes the write lock at BEGIN, which is
    how writers there queue instead of failing on a busy database.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
    else:
        with write_transaction(engine) as conn:
            yield conn


def engine_from_settings(settings: Settings) -> Engine:
    # The pool holds one connection per parallel job plus room for the lock's own statements.
    url = normalize_url(settings.database_url.get_secret_value())
    return make_engine(url, pool_size=max(5, settings.max_parallel_jobs + 2))
