"""One heartbeat thread per process and database beats for every running execution."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

from sqlalchemy import Engine, select

from prefect_nightly_jobs import Lease, LockPolicy, acquire_job_lock
from prefect_nightly_jobs.models import job_execution as t

POLICY = LockPolicy(stale_after_ms=2_000, heartbeat_every_ms=100)
WAIT_S = 10.0


def _heartbeat_at(engine: Engine, lease: Lease) -> object:
    with engine.connect() as conn:
        value = conn.execute(
            select(t.c.heartbeat_at).where(t.c.id == lease.execution.id)
        ).scalar_one()
        conn.rollback()
    return value


def _heartbeat_threads(engine: Engine) -> list[threading.Thread]:
    return [th for th in threading.enumerate() if th.name == f"heartbeat:{engine.url.database}"]


def test_one_thread_beats_for_every_running_execution(engine: Engine) -> None:
    with ExitStack() as stack:
        leases = []
        for job_type in ("alpha", "beta", "gamma"):
            result = acquire_job_lock(engine, job_type, policy=POLICY)
            assert result.acquired
            leases.append(stack.enter_context(result.lease))
        deadline = time.monotonic() + WAIT_S
        while any(_heartbeat_at(engine, lease) is None for lease in leases):
            assert time.monotonic() < deadline, "not every execution got a heartbeat"
            time.sleep(0.05)
        first = [_heartbeat_at(engine, lease) for lease in leases]
        while any(
            _heartbeat_at(engine, lease) == f for lease, f in zip(leases, first, strict=True)
        ):
            assert time.monotonic() < deadline, "heartbeats did not keep coming"
            time.sleep(0.05)
        assert len(_heartbeat_threads(engine)) == 1
        assert all(lease.still_held() for lease in leases)
    assert all(lease.outcome is not None and lease.outcome.recorded for lease in leases)


def test_no_beat_after_the_lease_ends(engine: Engine) -> None:
    result = acquire_job_lock(engine, "short", policy=POLICY)
    assert result.acquired
    with result.lease as lease:
        deadline = time.monotonic() + WAIT_S
        while _heartbeat_at(engine, lease) is None:
            assert time.monotonic() < deadline, "no heartbeat while running"
            time.sleep(0.02)
    hb = lease._heartbeat
    assert hb is not None and hb.stopped
    beats = hb.beats
    time.sleep(POLICY.heartbeat_every_ms * 3 / 1000)
    assert hb.beats == beats
    assert not hb.lost.is_set()  # a finished lease's row is not RUNNING, and that is no loss
