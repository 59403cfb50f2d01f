"""Operator queries (status, history, unlock) on both backends, against rows the real lock wrote."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import Engine, select, update

from prefect_nightly_jobs import (
    LockAcquired,
    LockLostError,
    LockPolicy,
    Origin,
    Status,
    acquire_job_lock,
)
from prefect_nightly_jobs.clock import stale_cutoff
from prefect_nightly_jobs.errors import ConfigurationError, LockError
from prefect_nightly_jobs.executions import history, job_states, unlock
from prefect_nightly_jobs.lock import record_outcome
from prefect_nightly_jobs.models import job_execution as t

POLICY = LockPolicy(stale_after_ms=60_000, heartbeat_every_ms=10_000)
DAY = date(2026, 11, 28)


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def hold(engine: Engine, job_type: str, policy: LockPolicy = POLICY) -> LockAcquired:
    result = acquire_job_lock(
        engine, job_type, policy=policy, period=DAY, origin=Origin(owner="host:42")
    )
    assert isinstance(result, LockAcquired), result
    return result


def test_status_shows_last_finished_and_running_rows(engine: Engine) -> None:
    hold(engine, "alpha").lease.succeed()
    running = hold(engine, "alpha")
    record_outcome(engine, "beta", Status.SKIPPED, "disabled via BETA_ENABLED", period=DAY)
    orphan = hold(engine, "zeta")  # running, but not in the list asked for
    try:
        report = job_states(engine, ["alpha", "beta", "gamma"])
    finally:
        running.lease.succeed()
        orphan.lease.succeed()
    by_type = {state.job_type: state for state in report.jobs}
    assert [s.job_type for s in report.jobs] == ["alpha", "beta", "gamma", "zeta"]
    alpha = by_type["alpha"]
    assert alpha.last is not None and alpha.last.status is Status.SUCCESS
    assert alpha.running is not None and alpha.running.id == running.execution.id
    assert alpha.running.owner == "host:42"
    assert alpha.running.heartbeat_age_s is not None and alpha.running.heartbeat_age_s >= 0
    assert alpha.last.heartbeat_age_s is None
    beta = by_type["beta"]
    assert beta.running is None and beta.last is not None
    assert (beta.last.status, beta.last.message) == (Status.SKIPPED, "disabled via BETA_ENABLED")
    assert beta.last.period == DAY
    assert by_type["gamma"].last is None and by_type["gamma"].running is None
    assert by_type["zeta"].running is not None


def test_heartbeat_age_is_measured_with_database_time(engine: Engine) -> None:
    running = hold(engine, "alpha")
    try:
        # Date the last beat 90 s back by the database's clock; the worker's clock plays no part.
        with engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id == running.execution.id)
                .values(heartbeat_at=stale_cutoff(90_000))
            )
        state = job_states(engine, ["alpha"]).jobs[0]
    finally:
        running.lease.succeed()
    assert state.running is not None and state.running.heartbeat_age_s is not None
    assert 90 <= state.running.heartbeat_age_s < 90 + 3600
    as_json = state.running.to_json()
    assert as_json["status"] == "RUNNING" and as_json["period"] == DAY.isoformat()
    assert as_json["heartbeat_age_s"] >= 90


def test_history_is_newest_first_and_filters(engine: Engine) -> None:
    hold(engine, "alpha").lease.succeed()
    hold(engine, "alpha").lease.fail("RuntimeError: boom")
    record_outcome(engine, "beta", Status.SKIPPED, "upstream alpha failed", period=DAY)
    hold(engine, "alpha").lease.succeed()

    everything = history(engine).executions
    assert [r.id for r in everything] == sorted((r.id for r in everything), reverse=True)
    assert [(r.job_type, r.status) for r in everything] == [
        ("alpha", Status.SUCCESS),
        ("beta", Status.SKIPPED),
        ("alpha", Status.FAILURE),
        ("alpha", Status.SUCCESS),
    ]
    assert [r.status for r in history(engine, "alpha", limit=2).executions] == [
        Status.SUCCESS,
        Status.FAILURE,
    ]
    failed = history(engine, status=Status.FAILURE).executions
    assert [(r.job_type, r.message) for r in failed] == [("alpha", "RuntimeError: boom")]
    assert history(engine, "nobody").executions == []
    with pytest.raises(ConfigurationError, match="not a lowercase identifier"):
        history(engine, "Bad-Name")


def test_unlock_releases_and_the_running_job_sees_it_lost_the_lock(engine: Engine) -> None:
    fast = LockPolicy(stale_after_ms=2_000, heartbeat_every_ms=100)
    running = hold(engine, "alpha", fast)
    lost = pytest.raises(LockLostError, match="released by operator: stuck on a remote API")
    with lost, running.lease as lease:
        released = unlock(engine, "alpha", "  stuck on a remote\nAPI ")
        assert released.id == running.execution.id
        assert released.status is Status.FAILURE
        assert released.completed_at is not None
        wait_until(lambda: not lease.still_held())  # the heartbeat found the row released
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.id == running.execution.id)).one()
        conn.rollback()
    # The job's own final write (SUCCESS) did not overwrite the operator's audit.
    assert (row.status, row.error_message) == (
        "FAILURE",
        "released by operator: stuck on a remote API",
    )
    # The lock is free again.
    hold(engine, "alpha").lease.succeed()


def test_unlock_refuses_when_nothing_runs(engine: Engine) -> None:
    hold(engine, "alpha").lease.succeed()
    with pytest.raises(LockError, match="has no RUNNING execution: nothing to unlock"):
        unlock(engine, "alpha", "just in case")
    with pytest.raises(LockError, match="has no RUNNING execution"):
        unlock(engine, "never_ran", "just in case")
    assert [r.status for r in history(engine).executions] == [Status.SUCCESS]


def test_unlock_needs_a_reason_and_changes_nothing_without_one(engine: Engine) -> None:
    running = hold(engine, "alpha")
    try:
        with pytest.raises(LockError, match="must not be empty"):
            unlock(engine, "alpha", "   ")
        assert job_states(engine, ["alpha"]).jobs[0].running is not None
    finally:
        running.lease.succeed()
