"""Liveness: heartbeats, the stale threshold at its edge, and a SIGKILLed holder being reaped."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest
from sqlalchemy import Engine, literal, select, update
from sqlalchemy.engine import URL

from prefect_nightly_jobs import (
    LockAcquired,
    LockNotAcquired,
    LockPolicy,
    SkipKind,
    acquire_job_lock,
    testing,
)
from prefect_nightly_jobs.clock import db_now_minus, is_stale
from prefect_nightly_jobs.models import job_execution as t
from tests import workers

CTX = mp.get_context("spawn")


def _acquired(result: LockAcquired | LockNotAcquired) -> LockAcquired:
    assert isinstance(result, LockAcquired), f"expected the lock, got {result}"
    return result


def _set_last_beat(
    engine: Engine, execution_id: int, *, started_ago_ms: int, beat_ago_ms: int | None
) -> None:
    values = {
        "started_at": db_now_minus(literal(started_ago_ms)),
        "heartbeat_at": None if beat_ago_ms is None else db_now_minus(literal(beat_ago_ms)),
    }
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == execution_id).values(**values))


def _status(engine: Engine, execution_id: int) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(t.c.status, t.c.error_message).where(t.c.id == execution_id)
        ).one()
        conn.rollback()
    return row.status, row.error_message


@pytest.mark.parametrize(("age_ms", "stale"), [(1_999, False), (2_000, False), (2_001, True)])
def test_staleness_predicate_at_the_threshold(engine: Engine, age_ms: int, stale: bool) -> None:
    """Evaluated in one statement, so "now" is the same instant on both sides of the comparison."""
    with engine.connect() as conn:
        got = conn.execute(select(is_stale(db_now_minus(literal(age_ms)), 2_000))).scalar_one()
        conn.rollback()
    assert bool(got) is stale


POLICY = LockPolicy(stale_after_ms=2_000, heartbeat_every_ms=500)


@pytest.mark.parametrize(
    ("started_ago", "beat_ago", "reaped"),
    [
        (1_500, None, False),  # young, never beat: alive
        (1_800, 1_500, False),  # inside the threshold
        (2_500, 2_300, True),  # just past it
        (5_000, None, True),  # no heartbeat yet: the start time counts
        (5_000, 100, False),  # old start, fresh heartbeat: alive
    ],
)
def test_reaping_follows_last_sign_of_life(
    engine: Engine, started_ago: int, beat_ago: int | None, reaped: bool
) -> None:
    old = testing.as_if_dead(_acquired(acquire_job_lock(engine, "j", policy=POLICY)).lease)
    _set_last_beat(engine, old.execution.id, started_ago_ms=started_ago, beat_ago_ms=beat_ago)
    result = acquire_job_lock(engine, "j", policy=POLICY)
    if reaped:
        new = _acquired(result).lease
        status, message = _status(engine, old.execution.id)
        assert status == "FAILURE"
        assert message is not None and message.startswith("abandoned: no heartbeat since ")
        assert not old.succeed().recorded  # fencing: the reaped run cannot overwrite
        assert new.succeed().recorded
    else:
        assert isinstance(result, LockNotAcquired) and result.kind == SkipKind.ALREADY_RUNNING
        assert _status(engine, old.execution.id) == ("RUNNING", None)
        assert old.succeed().recorded


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_live_process_is_not_reaped_however_silent(engine: Engine) -> None:
    """On SQLite the holder's flock proves it alive: a silent heartbeat (its own job holds the
    write lock) is no reason to reap. Once the flock is gone (the process died), it is stale."""
    old = _acquired(acquire_job_lock(engine, "quiet", policy=POLICY)).lease
    _set_last_beat(engine, old.execution.id, started_ago_ms=60_000, beat_ago_ms=50_000)
    blocked = acquire_job_lock(engine, "quiet", policy=POLICY)
    assert isinstance(blocked, LockNotAcquired) and blocked.kind == SkipKind.ALREADY_RUNNING
    assert _status(engine, old.execution.id) == ("RUNNING", None)
    assert old.still_held()
    testing.as_if_dead(old)
    new = _acquired(acquire_job_lock(engine, "quiet", policy=POLICY)).lease
    assert _status(engine, old.execution.id)[0] == "FAILURE"
    assert new.succeed().recorded


def test_live_job_is_never_reaped_over_several_thresholds(engine: Engine) -> None:
    policy = LockPolicy(stale_after_ms=600, heartbeat_every_ms=100)
    lease = _acquired(acquire_job_lock(engine, "long", policy=policy)).lease
    attempts = 0
    with lease:
        deadline = time.monotonic() + 2.4  # four thresholds
        while time.monotonic() < deadline:
            result = acquire_job_lock(engine, "long", policy=policy)
            assert isinstance(result, LockNotAcquired), "a live, beating job was reaped"
            attempts += 1
            time.sleep(0.15)
        assert lease.still_held()
    assert attempts >= 5
    assert _status(engine, lease.execution.id) == ("SUCCESS", None)


@pytest.mark.timeout(120)
def test_sigkilled_holder_is_reaped_after_the_threshold(engine: Engine, db_url: URL) -> None:
    policy = LockPolicy(stale_after_ms=1_500, heartbeat_every_ms=300)
    ready = CTX.Event()
    child = CTX.Process(
        target=workers.hold_lock_forever,
        args=(db_url.render_as_string(hide_password=False), "victim", 1_500, 300, ready),
    )
    child.start()
    try:
        assert ready.wait(60), "the child never took the lock"
        blocked = acquire_job_lock(engine, "victim", policy=policy)
        assert isinstance(blocked, LockNotAcquired)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        killed_at = time.monotonic()
        winner = None
        while winner is None and time.monotonic() - killed_at < 20:
            result = acquire_job_lock(engine, "victim", policy=policy)
            if isinstance(result, LockAcquired):
                winner = result
            else:
                time.sleep(0.2)
        assert winner is not None, "the dead holder was never reaped"
        winner.lease.succeed()
    finally:
        if child.is_alive():
            child.kill()
    with engine.connect() as conn:
        statuses = conn.execute(select(t.c.status, t.c.error_message).order_by(t.c.id)).all()
        conn.rollback()
    assert statuses[0].status == "FAILURE"
    assert statuses[0].error_message.startswith("abandoned: no heartbeat since")
    assert statuses[-1].status == "SUCCESS"
    assert all(s.status != "RUNNING" for s in statuses)
