"""``async def`` jobs: same lock, heartbeat and final status as ``def`` jobs."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import Status, job_execution
from prefect_nightly_jobs.task import JobContext, background_job
from tests.jobtools import rows, run_task

pytestmark = pytest.mark.prefect


def _heartbeat_at(ctx: JobContext) -> object:
    with ctx.session.get_bind().connect() as conn:
        beat = select(job_execution.c.heartbeat_at).where(job_execution.c.id == ctx.execution_id)
        return conn.execute(beat).scalar_one()


@background_job("t_async_blocking")
async def t_async_blocking(ctx: JobContext) -> None:
    await asyncio.sleep(0)
    # Block the event loop (time.sleep, never await) until a heartbeat lands: it must come from
    # the heartbeat thread, not from a coroutine waiting for this one to yield.
    deadline = time.monotonic() + 15
    while _heartbeat_at(ctx) is None:
        assert time.monotonic() < deadline, "no heartbeat while the event loop was blocked"
        time.sleep(0.05)
    ctx.logger.info("heartbeat seen")


@background_job("t_async_boom")
async def t_async_boom(ctx: JobContext) -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


def test_async_job_beats_while_blocking_the_loop(job_env: URL, engine: Engine) -> None:
    assert t_async_blocking.is_async
    run = run_task(t_async_blocking)
    assert run.state.type == StateType.COMPLETED
    (row,) = rows(engine, "t_async_blocking")
    assert row.status == Status.SUCCESS and row.heartbeat_at is not None
    assert row.task_run_id == run.task_run_id


def test_async_job_failure(job_env: URL, engine: Engine) -> None:
    run = run_task(t_async_boom)
    assert (run.state.type, run.state.message) == (StateType.FAILED, "KeyError: 'missing'")
    (row,) = rows(engine, "t_async_boom")
    assert (row.status, row.error_message) == (Status.FAILURE, "KeyError: 'missing'")
