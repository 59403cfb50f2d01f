"""The process-wide engine of the application database, created once and checked once.

Job tasks run many times in one process (a nightly flow, a worker); each run must not pay for a new
pool or a migration check. The cache is keyed by the database URL so that a changed DATABASE_URL
(tests, a CLI option) gets its own engine.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from prefect_nightly_jobs.database import engine_from_settings
from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.schema import ensure_schema
from prefect_nightly_jobs.settings import Settings, get_settings

_engines: dict[str, Engine] = {}
_guard = threading.Lock()


def shared_engine(settings: Settings | None = None) -> Engine:
    """The engine for DATABASE_URL; on first use, SQLite is migrated and PostgreSQL is checked
    to be at head (``MigrationsNotAppliedError`` otherwise)."""
    settings = settings or get_settings()
    key = settings.database_url.get_secret_value()
    with _guard:
        engine = _engines.get(key)
        if engine is None:
            engine = engine_from_settings(settings)
            try:
                ensure_schema(engine)
            except BaseException:
                engine.dispose()
                raise
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, and processes that switch databases)."""
    with _guard:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


def lock_policy(settings: Settings | None = None) -> LockPolicy:
    settings = settings or get_settings()
    return LockPolicy(
        stale_after_ms=settings.stale_job_threshold_ms,
        heartbeat_every_ms=settings.heartbeat_interval_ms,
    )
