"""Database time: every timestamp and every staleness decision uses the database clock.

A worker whose own clock is off by hours therefore changes nothing. SQLite's CURRENT_TIMESTAMP has
whole-second precision, so SQLite gets an explicit millisecond format that sorts as text in the same
order as time (every timestamp in the job tables is written by these expressions).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, literal
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.types import TypeDecorator

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f000"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite hands back naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL function it renders
    """The database's current time."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now)
def _now_default(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "postgresql")
def _now_pg(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # statement_timestamp, not now(): a heartbeat must not be dated at an earlier transaction start.
    return "statement_timestamp()"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime('{SQLITE_FORMAT}', 'now')"


class db_now_minus(FunctionElement[datetime]):  # noqa: N801
    """The database's current time minus a number of milliseconds (the stale cut-off)."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, milliseconds: ColumnElement[Any]) -> None:
        super().__init__(milliseconds)


@compiles(db_now_minus, "postgresql")
def _minus_pg(element: db_now_minus, compiler: SQLCompiler, **kw: Any) -> str:
    (ms,) = element.clauses
    return f"(statement_timestamp() - make_interval(secs => {compiler.process(ms, **kw)} / 1000.0))"


@compiles(db_now_minus, "sqlite")
def _minus_sqlite(element: db_now_minus, compiler: SQLCompiler, **kw: Any) -> str:
    (ms,) = element.clauses
    modifier = f"printf('-%.3f seconds', {compiler.process(ms, **kw)} / 1000.0)"
    return f"strftime('{SQLITE_FORMAT}', 'now', {modifier})"


def stale_cutoff(threshold_ms: int | ColumnElement[Any]) -> db_now_minus:
    """Rows whose last sign of life is strictly before this instant are stale."""
    ms = literal(threshold_ms) if isinstance(threshold_ms, int) else threshold_ms
    return db_now_minus(ms)


def is_stale(
    last_beat: ColumnElement[datetime], threshold_ms: int | ColumnElement[Any]
) -> ColumnElement[bool]:
    """Older than the threshold, by the database clock. Exactly at the threshold is still alive.

    ``threshold_ms`` may be a bind parameter, for statements built once (the reaper's)."""
    return last_beat < stale_cutoff(threshold_ms)
