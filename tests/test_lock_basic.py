"""The lock's contract on both backends: outcomes, rows, pre-checks, fencing, other job types."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from prefect_nightly_jobs import (
    LockAcquired,
    LockLostError,
    LockNotAcquired,
    LockPolicy,
    Origin,
    PreCheckContext,
    PreCheckError,
    SkipKind,
    Status,
    acquire_job_lock,
    already_succeeded_for_period,
    record_outcome,
)
from prefect_nightly_jobs.clock import db_now
from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.models import job_execution as t

POLICY = LockPolicy(stale_after_ms=60_000, heartbeat_every_ms=10_000)


def rows(engine: Engine, job_type: str | None = None) -> list[tuple[int, str, str | None]]:
    query = select(t.c.id, t.c.status, t.c.error_message).order_by(t.c.id)
    if job_type is not None:
        query = query.where(t.c.job_type == job_type)
    with engine.connect() as conn:
        result = [(r.id, r.status, r.error_message) for r in conn.execute(query)]
        conn.rollback()
    return result


def acquired(result: LockAcquired | LockNotAcquired) -> LockAcquired:
    assert isinstance(result, LockAcquired), f"expected the lock, got {result}"
    return result


def test_acquire_then_second_is_skipped_with_reason(engine: Engine) -> None:
    first = acquired(acquire_job_lock(engine, "sync", policy=POLICY, origin=Origin(owner="w1")))
    second = acquire_job_lock(engine, "sync", policy=POLICY)
    assert isinstance(second, LockNotAcquired)
    assert second.kind == "already_running"
    assert f"execution {first.execution.id} on w1" in second.reason
    assert first.lease.succeed().recorded
    assert rows(engine, "sync") == [
        (first.execution.id, "SUCCESS", None),
        (second.skipped_execution_id, "SKIPPED", second.reason),
    ]
    third = acquired(acquire_job_lock(engine, "sync", policy=POLICY))
    third.lease.succeed()


def test_rows_carry_database_time_and_origin(engine: Engine) -> None:
    origin = Origin(owner="host:1", flow_run_id="f" * 36, task_run_id="t" * 36, attempt=2)
    lease = acquired(
        acquire_job_lock(engine, "sync", policy=POLICY, origin=origin, period=date(2026, 11, 28))
    ).lease
    lease.succeed()
    with engine.connect() as conn:
        row = conn.execute(
            select(t, db_now().label("now")).where(t.c.id == lease.execution.id)
        ).one()
        conn.rollback()
    assert (row.owner, row.flow_run_id, row.task_run_id, row.attempt) == (
        "host:1",
        "f" * 36,
        "t" * 36,
        2,
    )
    assert row.period == date(2026, 11, 28)
    assert row.started_at <= row.completed_at <= row.now
    assert (row.now - row.started_at).total_seconds() < 60


def test_context_manager_records_success_failure_and_interrupt(engine: Engine) -> None:
    with acquired(acquire_job_lock(engine, "a", policy=POLICY)).lease:
        pass
    with (
        pytest.raises(ValueError, match="boom"),
        acquired(acquire_job_lock(engine, "a", policy=POLICY)).lease,
    ):
        raise ValueError("boom")
    with (
        pytest.raises(KeyboardInterrupt),
        acquired(acquire_job_lock(engine, "a", policy=POLICY)).lease,
    ):
        raise KeyboardInterrupt
    assert [(s, e) for _, s, e in rows(engine, "a")] == [
        ("SUCCESS", None),
        ("FAILURE", "ValueError: boom"),
        ("FAILURE", "interrupted (KeyboardInterrupt)"),
    ]


def test_other_job_types_do_not_wait_for_a_held_lock(engine: Engine) -> None:
    held = acquired(acquire_job_lock(engine, "slow", policy=POLICY))
    other = acquired(acquire_job_lock(engine, "fast", policy=POLICY))
    other.lease.succeed()
    held.lease.succeed()
    assert [s for _, s, _ in rows(engine)] == ["SUCCESS", "SUCCESS"]


def test_acquisition_of_other_type_not_blocked_by_open_lock_transaction(pg_url: object) -> None:
    """PostgreSQL locks one row per job type: an acquirer of A that is still inside its transaction
    (a slow pre-check) does not delay B. (SQLite serializes all writers for those milliseconds.)"""
    from prefect_nightly_jobs import testing

    assert not isinstance(pg_url, str)
    with testing.counted_engine(pg_url) as (engine, counter):  # type: ignore[arg-type]
        inside = threading.Event()
        release = threading.Event()

        def slow_check(ctx: PreCheckContext) -> str | None:
            inside.set()
            assert release.wait(10), "test did not release the pre-check"
            return None

        results: list[LockAcquired | LockNotAcquired] = []
        worker = threading.Thread(
            target=lambda: results.append(
                acquire_job_lock(engine, "a", policy=POLICY, pre_check=slow_check)
            )
        )
        worker.start()
        assert inside.wait(10)
        b = acquired(
            acquire_job_lock(engine, "b", policy=POLICY)
        )  # returns while "a" is still open
        assert worker.is_alive(), "A's transaction should still be open"
        b.lease.succeed()
        release.set()
        worker.join(10)
        acquired(results[0]).lease.succeed()
        assert counter.out == 0


def test_pre_check_runs_inside_the_lock(engine: Engine) -> None:
    """A second acquirer cannot slip in between the first one's check and its insert."""
    inside = threading.Event()
    order: list[str] = []

    def slow_check(ctx: PreCheckContext) -> str | None:
        inside.set()
        time.sleep(0.3)
        order.append("check done")
        return None

    first: list[LockAcquired | LockNotAcquired] = []
    worker = threading.Thread(
        target=lambda: first.append(
            acquire_job_lock(engine, "x", policy=POLICY, pre_check=slow_check)
        )
    )
    worker.start()
    assert inside.wait(10)
    second = acquire_job_lock(engine, "x", policy=POLICY, pre_check=lambda ctx: None)
    order.append("second decided")
    worker.join(10)
    assert order == ["check done", "second decided"]
    assert isinstance(second, LockNotAcquired) and second.kind == "already_running"
    acquired(first[0]).lease.succeed()


def test_pre_check_gets_a_session_in_the_transaction_and_can_skip(engine: Engine) -> None:
    seen: list[object] = []

    def check(ctx: PreCheckContext) -> str | None:
        seen.append(ctx.session.execute(select(func.count()).select_from(t)).scalar_one())
        return "nothing new to import"

    result = acquire_job_lock(engine, "imp", policy=POLICY, pre_check=check)
    assert isinstance(result, LockNotAcquired)
    assert (result.kind, result.reason) == (SkipKind.PRE_CHECK, "nothing new to import")
    assert seen == [0]
    assert [(s, e) for _, s, e in rows(engine)] == [("SKIPPED", "nothing new to import")]
    forced = acquired(acquire_job_lock(engine, "imp", policy=POLICY, pre_check=check, force=True))
    forced.lease.succeed()


def test_pre_check_exception_is_a_failure_not_a_stuck_row(engine: Engine) -> None:
    def broken(ctx: PreCheckContext) -> str | None:
        raise RuntimeError("source API down")

    with pytest.raises(PreCheckError, match="source API down") as info:
        acquire_job_lock(engine, "imp", policy=POLICY, pre_check=broken)
    assert rows(engine) == [
        (info.value.execution_id, "FAILURE", "pre-check failed: RuntimeError: source API down")
    ]
    acquired(acquire_job_lock(engine, "imp", policy=POLICY)).lease.succeed()


def test_once_per_period(engine: Engine) -> None:
    day = date(2026, 11, 28)
    kwargs = {"policy": POLICY, "pre_check": already_succeeded_for_period}
    first = acquired(acquire_job_lock(engine, "rollup", period=day, **kwargs))  # type: ignore[arg-type]
    first.lease.succeed()
    again = acquire_job_lock(engine, "rollup", period=day, **kwargs)  # type: ignore[arg-type]
    assert isinstance(again, LockNotAcquired)
    assert (
        again.reason == f"already succeeded for period 2026-11-28 (execution {first.execution.id})"
    )
    other_day = acquired(acquire_job_lock(engine, "rollup", period=date(2026, 11, 29), **kwargs))  # type: ignore[arg-type]
    other_day.lease.fail("broken")
    retry = acquired(acquire_job_lock(engine, "rollup", period=date(2026, 11, 29), **kwargs))  # type: ignore[arg-type]
    retry.lease.succeed()


def test_fenced_finish_changes_nothing(engine: Engine) -> None:
    lease = acquired(acquire_job_lock(engine, "f", policy=POLICY)).lease
    with engine.begin() as conn:  # an operator (or a reaper) ends the row meanwhile
        conn.execute(
            update(t)
            .where(t.c.id == lease.execution.id)
            .values(
                status="FAILURE", completed_at=db_now(), error_message="released by operator: x"
            )
        )
    outcome = lease.succeed()
    assert not outcome.recorded
    assert "lock lost" in outcome.detail and "released by operator: x" in outcome.detail
    assert rows(engine) == [(lease.execution.id, "FAILURE", "released by operator: x")]


def test_context_manager_reports_lost_lock(engine: Engine) -> None:
    lease = acquired(acquire_job_lock(engine, "f", policy=POLICY)).lease
    with pytest.raises(LockLostError, match="lock lost"), lease, engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == lease.execution.id)
            .values(status="FAILURE", completed_at=db_now(), error_message="reaped")
        )
    assert rows(engine)[0][1:] == ("FAILURE", "reaped")


def test_heartbeat_notices_lost_lock(engine: Engine) -> None:
    policy = LockPolicy(stale_after_ms=2_000, heartbeat_every_ms=100)
    lease = acquired(acquire_job_lock(engine, "hb", policy=policy)).lease
    lease.start_heartbeat()
    try:
        assert lease.still_held()
        with engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id == lease.execution.id)
                .values(status="FAILURE", completed_at=db_now(), error_message="released")
            )
        deadline = time.monotonic() + 5
        while lease.still_held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lease.still_held()
    finally:
        assert not lease.succeed().recorded


def test_database_refuses_a_second_running_row(engine: Engine) -> None:
    """Invariant 1 holds without the Python code: a raw second RUNNING insert is refused."""
    values = {"job_type": "raw", "status": "RUNNING", "started_at": db_now()}
    with engine.begin() as conn:
        conn.execute(insert(t).values(**values))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(t).values(**values))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a finished row must have an end
        conn.execute(insert(t).values(job_type="raw", status="SUCCESS", started_at=db_now()))


def test_naive_select_for_update_then_insert_is_refused(pg_url: object) -> None:
    """The trap of DESIGN.md, interleaved by hand: both transactions lock nothing, both see nothing
    running, both insert. The partial unique index is what stops the second."""
    from sqlalchemy.engine import URL

    from prefect_nightly_jobs.database import make_engine

    assert isinstance(pg_url, URL)
    engine = make_engine(pg_url)
    naive = text(
        "SELECT id FROM job_execution WHERE job_type = 'n' AND status = 'RUNNING' FOR UPDATE"
    )
    insert_running = text(
        "INSERT INTO job_execution (job_type, status, started_at) VALUES ('n', 'RUNNING', now())"
    )
    try:
        with engine.connect() as one, engine.connect() as two:
            assert one.execute(naive).first() is None
            assert two.execute(naive).first() is None  # not blocked: there was nothing to lock
            one.execute(insert_running)
            one.commit()
            with pytest.raises(IntegrityError, match="uq_job_execution_running"):
                two.execute(insert_running)
            two.rollback()
    finally:
        engine.dispose()


def test_record_outcome_and_validation(engine: Engine) -> None:
    skip_id = record_outcome(engine, "d", Status.SKIPPED, "disabled via D_ENABLED")
    assert rows(engine) == [(skip_id, "SKIPPED", "disabled via D_ENABLED")]
    for bad in ["Robert'); DROP TABLE job_execution;--", "UPPER", "1abc", "", "a" * 101]:
        with pytest.raises(ConfigurationError, match="lowercase identifier"):
            acquire_job_lock(engine, bad, policy=POLICY)
    assert len(rows(engine)) == 1
