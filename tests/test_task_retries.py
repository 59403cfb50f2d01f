"""Prefect retries: one row per attempt, never two RUNNING rows, the final state is the last one."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.task import JobContext, background_job
from tests.jobtools import rows, run_task

pytestmark = pytest.mark.prefect


@background_job("t_flaky", retries=2, retry_delay_seconds=0)
def t_flaky(ctx: JobContext) -> None:
    if ctx.attempt == 1:
        raise ConnectionError("source timed out")
    ctx.logger.info("attempt %d worked", ctx.attempt)


@background_job("t_hopeless", retries=1, retry_delay_seconds=0)
def t_hopeless(ctx: JobContext) -> None:
    raise ConnectionError(f"still down (attempt {ctx.attempt})")


def test_failing_once_then_succeeding(job_env: URL, engine: Engine) -> None:
    run = run_task(t_flaky)
    assert run.state.type == StateType.COMPLETED
    history = [
        (r.status, r.error_message, r.attempt, r.task_run_id) for r in rows(engine, "t_flaky")
    ]
    assert history == [
        (Status.FAILURE, "ConnectionError: source timed out", 1, run.task_run_id),
        (Status.SUCCESS, None, 2, run.task_run_id),
    ]


def test_retries_exhausted_leave_one_failure_per_attempt(job_env: URL, engine: Engine) -> None:
    run = run_task(t_hopeless)
    assert run.state.type == StateType.FAILED
    assert run.state.message == "ConnectionError: still down (attempt 2)"
    history = [(r.status, r.error_message, r.attempt) for r in rows(engine, "t_hopeless")]
    assert history == [
        (Status.FAILURE, "ConnectionError: still down (attempt 1)", 1),
        (Status.FAILURE, "ConnectionError: still down (attempt 2)", 2),
    ]
    assert all(r.completed_at is not None for r in rows(engine, "t_hopeless"))
