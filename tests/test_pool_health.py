"""Dead pooled connections are replaced before the lock uses them (without a ping per checkout).

A restarted PostgreSQL (or ``pg_terminate_backend``) leaves pooled connections whose server is
gone. The engine notices at checkout, from the socket or, after an idle spell, with a ping.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs import acquire_job_lock, database, testing


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pg_url: URL, pid: int) -> None:
    with testing.counted_engine(pg_url) as (admin, _), admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        deadline = time.monotonic() + 30
        gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
        while conn.execute(gone, {"p": pid}).scalar_one():
            assert time.monotonic() < deadline, f"backend {pid} still alive after 30 s"
            time.sleep(0.02)
            conn.rollback()


def _lock_works(engine: Engine) -> None:
    result = acquire_job_lock(engine, "after_restart")
    assert result.acquired
    with result.lease:
        pass


def test_connection_closed_by_the_server_is_replaced(pg_url: URL) -> None:
    with testing.counted_engine(pg_url) as (engine, counter):
        old = _backend_pid(engine)
        _terminate(pg_url, old)
        _lock_works(engine)
        assert _backend_pid(engine) != old
        assert counter.out == 0


def test_connection_idle_too_long_is_pinged(pg_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection cut without the server saying so (a firewall, a network cut) is only found
    by a ping: pretend the socket looks fine and the connection has been idle long enough."""
    monkeypatch.setattr(database, "_server_hung_up", lambda _conn: False)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)
    with testing.counted_engine(pg_url) as (engine, counter):
        old = _backend_pid(engine)
        _terminate(pg_url, old)
        _lock_works(engine)
        assert _backend_pid(engine) != old
        assert counter.out == 0
