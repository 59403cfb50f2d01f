"""PostgreSQL: acquirers that find the lock row held wait for its holder only, not for each other.

Before this, 32 racers queued one behind the other on the lock row, each holding it through its
own round trips and commit (bench row 4). Now an acquirer that finds the row held takes it
``FOR SHARE``: all such observers wait for the one holder and then decide together. Only when no
live run holds the job do they queue ``FOR UPDATE``, so one of them may reap a stale run, run the
pre-check and insert, exactly as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, literal, select, text, update
from sqlalchemy.engine import URL

from jobs import LockPolicy, LockResult, Status, acquire_job_lock
from jobs.clock import db_now_minus
from jobs.models import job_execution as t
from jobs.models import job_lock
from tests import dbtools

POLICY = LockPolicy(stale_after_ms=60_000, heartbeat_every_ms=10_000)
OBSERVERS = 3
WAIT_S = 30.0


@pytest.fixture
def engine(pg_url: URL) -> Iterator[Engine]:
    """PostgreSQL only: SQLite serializes whole transactions (BEGIN IMMEDIATE) instead."""
    with dbtools.counted_engine(pg_url) as (eng, counter):
        yield eng
        assert counter.out == 0, f"{counter.out} connection(s) still checked out after the test"


@contextmanager
def holding_lock_row(engine: Engine, job_type: str) -> Iterator[Connection]:
    """Another acquirer in the middle of its transaction: the lock row held FOR UPDATE."""
    with engine.connect() as conn:
        conn.execute(
            select(job_lock.c.job_type).where(job_lock.c.job_type == job_type).with_for_update()
        ).one()
        try:
            yield conn
        finally:
            conn.rollback()


def _race(engine: Engine, job_type: str, holder: Connection) -> list[LockResult]:
    """Start the observers, check whom they wait for, release the holder, collect results."""
    results: list[LockResult] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            results.append(acquire_job_lock(engine, job_type, policy=POLICY))
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=attempt) for _ in range(OBSERVERS)]
    for th in threads:
        th.start()
    holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
    blocked_by = _wait_for_waiters(engine, holder_pid)
    holder.rollback()
    for th in threads:
        th.join(WAIT_S)
        assert not th.is_alive(), "an acquirer hung"
    assert not errors, errors
    # Every waiter waits for the holder alone: none queues behind another waiter.
    assert blocked_by == [[holder_pid]] * OBSERVERS, blocked_by
    return results


def _wait_for_waiters(engine: Engine, holder_pid: int) -> list[list[int]]:
    query = text(
        "SELECT pg_blocking_pids(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> :holder"
    )
    deadline = time.monotonic() + WAIT_S
    with engine.connect() as conn:
        while True:
            waiting = [list(r[0]) for r in conn.execute(query, {"holder": holder_pid})]
            conn.rollback()
            if len(waiting) == OBSERVERS:
                return sorted(waiting)
            assert time.monotonic() < deadline, f"only {len(waiting)} acquirers waiting"
            time.sleep(0.02)


def _prime(engine: Engine, job_type: str) -> None:
    """Create the job type's lock row (first use) and leave nothing running."""
    first = acquire_job_lock(engine, job_type, policy=POLICY)
    assert first.acquired
    with first.lease:
        pass


def test_observers_of_a_live_run_all_skip(engine: Engine) -> None:
    _prime(engine, "busy")
    running = acquire_job_lock(engine, "busy", policy=POLICY)
    assert running.acquired
    with running.lease, holding_lock_row(engine, "busy") as holder:
        results = _race(engine, "busy", holder)
        assert [r.acquired for r in results] == [False] * OBSERVERS
        assert {getattr(r, "kind", None) for r in results} == {"already_running"}
    with engine.connect() as conn:
        statuses = sorted(conn.execute(select(t.c.status).where(t.c.job_type == "busy")).scalars())
    assert statuses == sorted([Status.SUCCESS] * 2 + [Status.SKIPPED] * OBSERVERS)


def test_observers_queue_when_nothing_runs(engine: Engine) -> None:
    _prime(engine, "idle")
    with holding_lock_row(engine, "idle") as holder:
        results = _race(engine, "idle", holder)
    winners = [r for r in results if r.acquired]
    assert len(winners) == 1
    for r in winners:
        with r.lease:
            pass


def test_observers_queue_to_reap_a_stale_run(engine: Engine) -> None:
    _prime(engine, "stale")
    dead = acquire_job_lock(engine, "stale", policy=POLICY)
    assert dead.acquired
    with engine.begin() as conn:  # its holder died long ago
        conn.execute(
            update(t)
            .where(t.c.id == dead.execution.id)
            .values(started_at=db_now_minus(literal(120_000)))
        )
    with holding_lock_row(engine, "stale") as holder:
        results = _race(engine, "stale", holder)
    winners = [r for r in results if r.acquired]
    assert len(winners) == 1
    for r in winners:
        with r.lease:
            pass
    with engine.connect() as conn:
        reaped = conn.execute(
            select(t.c.status, t.c.error_message).where(t.c.id == dead.execution.id)
        ).one()
    assert reaped.status == Status.FAILURE and reaped.error_message.startswith("abandoned")
    assert not dead.lease.succeed().recorded
