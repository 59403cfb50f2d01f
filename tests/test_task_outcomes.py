"""Every outcome of a job task, in both systems: the Prefect state and the job_execution row."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from prefect.client.schemas.objects import State, StateType
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import URL

from jobs.models import DailyEventRollup
from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.lock import PreCheckContext, acquire_job_lock
from prefect_nightly_jobs.models import Status, job_execution
from prefect_nightly_jobs.outcome import Blocker, JobFailedError, JobOutcome, SkipKind
from prefect_nightly_jobs.prefect_states import outcome_from_state
from prefect_nightly_jobs.task import JobContext, background_job
from tests.jobtools import PERIOD, rows, run_task

pytestmark = pytest.mark.prefect


def _write_marker(ctx: JobContext) -> None:
    ctx.session.execute(
        insert(DailyEventRollup).values(
            day=ctx.period, kind=f"{ctx.job_type}:{ctx.execution_id}", event_count=1, amount_cents=0
        )
    )


def _markers(engine: Engine, kind: str) -> int:
    with engine.connect() as conn:
        count = select(func.count()).where(DailyEventRollup.kind.like(f"{kind}:%"))
        return int(conn.execute(count).scalar_one())


@background_job("t_ok", description="succeeds")
def t_ok(ctx: JobContext) -> None:
    ctx.logger.info("hello from the body")
    _write_marker(ctx)


@background_job("t_boom")
def t_boom(ctx: JobContext) -> None:
    _write_marker(ctx)
    raise ValueError("boom")


@background_job("t_once", once_per_period=True)
def t_once(ctx: JobContext) -> None:
    _write_marker(ctx)


def _nothing_to_do(ctx: PreCheckContext) -> str | None:
    return f"nothing to do for {ctx.period}"


def _broken_check(ctx: PreCheckContext) -> str | None:
    raise RuntimeError("source unreachable")


@background_job("t_checked", pre_check=_nothing_to_do)
def t_checked(ctx: JobContext) -> None:
    _write_marker(ctx)


@background_job("t_check_raises", pre_check=_broken_check)
def t_check_raises(ctx: JobContext) -> None:
    _write_marker(ctx)


def _end_row_behind_its_back(ctx: JobContext, message: str) -> None:
    """What another process (a reaper, an operator) does to this run's row."""
    with ctx.session.get_bind().connect() as conn:
        conn.execute(
            update(job_execution)
            .where(job_execution.c.id == ctx.execution_id)
            .values(
                status=Status.FAILURE, completed_at=func.current_timestamp(), error_message=message
            )
        )
        conn.commit()


@background_job("t_lost")
def t_lost(ctx: JobContext) -> None:
    _end_row_behind_its_back(ctx, "abandoned: test reaper")  # play the reaper
    deadline = time.monotonic() + 15
    while ctx.still_held():  # the heartbeat notices within one interval
        assert time.monotonic() < deadline, "the heartbeat never noticed the lost lock"
        time.sleep(0.05)
    _write_marker(ctx)  # work done after the loss must not be committed


@background_job("t_released_late")
def t_released_late(ctx: JobContext) -> None:
    # An operator's release lands after the last heartbeat, while the body is finishing: the body
    # still believes it holds the lock, so only the final write can catch it.
    _end_row_behind_its_back(ctx, "released by operator: late")
    assert ctx.still_held(), "the heartbeat interval is long: the body cannot know yet"
    _write_marker(ctx)


@background_job("t_added")
def t_added(ctx: JobContext) -> None:
    # Added, never flushed: no transaction is open yet, the commit at the end must still save it.
    ctx.session.add(
        DailyEventRollup(
            day=ctx.period, kind=f"t_added:{ctx.execution_id}", event_count=1, amount_cents=0
        )
    )


@background_job("t_committed")
def t_committed(ctx: JobContext) -> None:
    _write_marker(ctx)
    ctx.session.commit()  # a body that commits its own batches leaves nothing open


@background_job("t_released_idle")
def t_released_idle(ctx: JobContext) -> None:
    # Released while the body touches no data: the final write alone must see it.
    _end_row_behind_its_back(ctx, "released by operator: idle")


def _outcome(state: State[Any]) -> JobOutcome:
    outcome = outcome_from_state("?", state)
    assert outcome.job_type != "?", f"no outcome behind {state!r}"
    return outcome


def test_success_completed_and_row_success(job_env: URL, engine: Engine) -> None:
    run = run_task(t_ok)
    assert run.state.type == StateType.COMPLETED and run.state.name == "Completed"
    (row,) = rows(engine, "t_ok")
    assert row.status == Status.SUCCESS and row.error_message is None
    assert row.period == PERIOD and row.completed_at is not None
    assert (row.flow_run_id, row.task_run_id, row.attempt) == (run.flow_run_id, run.task_run_id, 1)
    assert _outcome(run.state).execution_id == row.id
    assert _markers(engine, "t_ok") == 1, "the framework commits the body's session"


def test_success_state_names_the_execution_row(job_env: URL, engine: Engine) -> None:
    run = run_task(t_committed)
    (row,) = rows(engine, "t_committed")
    assert row.status == Status.SUCCESS
    assert run.state.message == f"recorded as execution {row.id}"
    assert _markers(engine, "t_committed") == 1


def test_unflushed_objects_commit_with_the_success(job_env: URL, engine: Engine) -> None:
    run = run_task(t_added)
    assert run.state.is_completed()
    (row,) = rows(engine, "t_added")
    assert row.status == Status.SUCCESS
    assert _markers(engine, "t_added") == 1


def test_release_of_a_body_without_data_is_lock_lost(job_env: URL, engine: Engine) -> None:
    run = run_task(t_released_idle)
    assert run.state.type == StateType.FAILED
    assert run.state.message is not None and run.state.message.startswith("lock lost: ")
    (row,) = rows(engine, "t_released_idle")
    assert (row.status, row.error_message) == (Status.FAILURE, "released by operator: idle")


def test_failure_failed_with_message_and_rolled_back(job_env: URL, engine: Engine) -> None:
    run = run_task(t_boom)
    assert run.state.type == StateType.FAILED
    assert run.state.message == "ValueError: boom"
    (row,) = rows(engine, "t_boom")
    assert (row.status, row.error_message) == (Status.FAILURE, "ValueError: boom")
    assert row.task_run_id == run.task_run_id
    assert _markers(engine, "t_boom") == 0, "the body's session is rolled back on failure"
    error = run.state.result(raise_on_failure=False)
    assert isinstance(error, JobFailedError), (
        "a Failed state carries an exception, as Prefect expects"
    )


def test_disabled_is_skipped_in_both_systems(
    job_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_OK_ENABLED", "false")
    run = run_task(t_ok)
    assert (run.state.type, run.state.name) == (StateType.CANCELLED, "Skipped")
    assert run.state.message == "disabled via T_OK_ENABLED"
    (row,) = rows(engine, "t_ok")
    assert (row.status, row.error_message) == (Status.SKIPPED, "disabled via T_OK_ENABLED")
    assert row.skip_kind == SkipKind.DISABLED
    assert row.flow_run_id == run.flow_run_id
    assert _markers(engine, "t_ok") == 0


def test_locked_is_skipped_with_the_holder(job_env: URL, engine: Engine) -> None:
    held = acquire_job_lock(engine, "t_ok", policy=LockPolicy(2000, 400), period=PERIOD)
    assert held.acquired
    with held.lease:
        run = run_task(t_ok)
    assert (run.state.type, run.state.name) == (StateType.CANCELLED, "Skipped")
    assert run.state.message is not None
    assert run.state.message.startswith(f"already running: execution {held.execution.id} on ")
    holder, skipped = rows(engine, "t_ok")
    assert holder.status == Status.SUCCESS
    assert (skipped.status, skipped.error_message) == (Status.SKIPPED, run.state.message)
    assert skipped.skip_kind == SkipKind.ALREADY_RUNNING
    assert skipped.task_run_id == run.task_run_id
    assert _markers(engine, "t_ok") == 0


def test_once_per_period_skips_and_force_runs(job_env: URL, engine: Engine) -> None:
    first = run_task(t_once)
    again = run_task(t_once)
    forced = run_task(t_once, force=True)
    other_day = run_task(t_once, period=PERIOD.replace(day=27))
    assert first.state.name == "Completed"
    assert (again.state.type, again.state.name) == (StateType.CANCELLED, "Skipped")
    done = rows(engine, "t_once")[0]
    expected = f"already succeeded for period {PERIOD.isoformat()} (execution {done.id})"
    assert again.state.message == expected
    assert forced.state.name == "Completed", "force skips the pre-check"
    assert other_day.state.name == "Completed"
    statuses = [(r.status, r.error_message, r.skip_kind) for r in rows(engine, "t_once")]
    assert statuses == [
        (Status.SUCCESS, None, None),
        (Status.SKIPPED, expected, SkipKind.ALREADY_DONE),
        (Status.SUCCESS, None, None),
        (Status.SUCCESS, None, None),
    ]


def test_pre_check_skip_and_pre_check_error(job_env: URL, engine: Engine) -> None:
    skipped = run_task(t_checked)
    assert (skipped.state.name, skipped.state.message) == ("Skipped", f"nothing to do for {PERIOD}")
    broken = run_task(t_check_raises)
    assert broken.state.type == StateType.FAILED
    assert broken.state.message == "pre-check failed: RuntimeError: source unreachable"
    (checked,) = rows(engine, "t_checked")
    assert (checked.status, checked.error_message, checked.skip_kind) == (
        Status.SKIPPED,
        f"nothing to do for {PERIOD}",
        SkipKind.PRE_CHECK,
    )
    assert skipped.state.type == StateType.CANCELLED
    (failed,) = rows(engine, "t_check_raises")
    assert (failed.status, failed.error_message) == (Status.FAILURE, broken.state.message)
    assert _outcome(broken.state).execution_id == failed.id
    assert _markers(engine, "t_checked") + _markers(engine, "t_check_raises") == 0


def test_upstream_failed_is_skipped_in_both_systems(job_env: URL, engine: Engine) -> None:
    run = run_task(t_ok, blocked_by=Blocker("t_boom", SkipKind.UPSTREAM_FAILED))
    assert (run.state.type, run.state.name, run.state.message) == (
        StateType.CRASHED,
        "UpstreamFailed",
        "upstream t_boom failed",
    )
    (row,) = rows(engine, "t_ok")
    assert (row.status, row.error_message) == (Status.SKIPPED, "upstream t_boom failed")
    assert row.skip_kind == SkipKind.UPSTREAM_FAILED
    assert _outcome(run.state).skip_kind == SkipKind.UPSTREAM_FAILED
    assert _markers(engine, "t_ok") == 0


@background_job("t_retried", retries=2)
def t_retried(ctx: JobContext) -> None:
    _write_marker(ctx)


def test_a_job_that_did_not_run_is_not_retried(job_env: URL, engine: Engine) -> None:
    """Prefect retries Failed states only: a skip of either kind is one attempt, one row."""
    blocked = run_task(t_retried, blocked_by=Blocker("t_boom", SkipKind.UPSTREAM_FAILED))
    busy = run_task(t_retried, blocked_by=Blocker("t_boom", SkipKind.UPSTREAM_RUNNING))
    assert (blocked.state.name, busy.state.name) == ("UpstreamFailed", "Skipped")
    assert [(r.attempt, r.skip_kind) for r in rows(engine, "t_retried")] == [
        (1, SkipKind.UPSTREAM_FAILED),
        (1, SkipKind.UPSTREAM_RUNNING),
    ]
    assert _markers(engine, "t_retried") == 0


def test_lock_lost_is_failed_and_changes_rolled_back(job_env: URL, engine: Engine) -> None:
    run = run_task(t_lost)
    assert run.state.type == StateType.FAILED
    assert run.state.message is not None and run.state.message.startswith("lock lost: ")
    (row,) = rows(engine, "t_lost")
    assert (row.status, row.error_message) == (Status.FAILURE, "abandoned: test reaper")
    assert _markers(engine, "t_lost") == 0


def test_release_after_last_heartbeat_rolls_back_the_data(
    job_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data and SUCCESS commit in one transaction: a release that beat the commit wins whole."""
    from prefect_nightly_jobs.settings import get_settings

    monkeypatch.setenv("JOB_HEARTBEAT_INTERVAL_MS", "900")  # the first beat comes after the body
    get_settings.cache_clear()
    run = run_task(t_released_late)
    assert run.state.type == StateType.FAILED
    assert run.state.message is not None and run.state.message.startswith("lock lost: ")
    (row,) = rows(engine, "t_released_late")
    assert (row.status, row.error_message) == (Status.FAILURE, "released by operator: late")
    assert _markers(engine, "t_released_late") == 0


def test_logger_prefix_through_prefect_and_no_error_lines(
    job_env: URL, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        run = run_task(t_ok)
    assert run.state.is_completed()
    body_lines = [r for r in caplog.records if r.getMessage() == "[t_ok] hello from the body"]
    assert body_lines, "the job's logger prefixes [job_type]"
    assert all(r.name == "prefect.task_runs" for r in body_lines), "it goes through Prefect"
    assert getattr(body_lines[0], "task_run_id", None) is not None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "a good run logs no ERROR (e.g. from cache-key hashing)"
