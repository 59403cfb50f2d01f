"""Hostile error messages through a real Prefect task: the Prefect state says what the row says."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import ERROR_MESSAGE_LIMIT, Status
from prefect_nightly_jobs.task import JobContext, background_job
from tests.jobtools import rows, run_task

pytestmark = [pytest.mark.faults, pytest.mark.prefect]


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


@background_job("f_unprintable")
def f_unprintable(ctx: JobContext) -> None:
    raise _UnprintableError


@background_job("f_huge")
def f_huge(ctx: JobContext) -> None:
    raise RuntimeError("postgresql://app:s3cr3t@db/app refused: " + "\x00\udcff" * 1_000_000)


@pytest.fixture
def app_engine(job_env: URL) -> Engine:
    return make_engine(job_env)


def test_unprintable_exception_fails_the_task_with_the_rows_message(
    job_env: URL, app_engine: Engine
) -> None:
    run = run_task(f_unprintable)
    (row,) = rows(app_engine, "f_unprintable")
    app_engine.dispose()
    assert (row.status, row.error_message) == (
        Status.FAILURE,
        "_UnprintableError: <exception str() failed>",
    )
    assert run.state.type == StateType.FAILED
    assert run.state.message == row.error_message


def test_huge_undecodable_message_is_the_same_bounded_text_in_both_systems(
    job_env: URL, app_engine: Engine
) -> None:
    run = run_task(f_huge)
    (row,) = rows(app_engine, "f_huge")
    app_engine.dispose()
    assert row.status == Status.FAILURE
    assert len(row.error_message) <= ERROR_MESSAGE_LIMIT
    assert row.error_message.startswith("RuntimeError: postgresql://app:***@db/app refused: \\0?")
    assert run.state.type == StateType.FAILED
    assert run.state.message == row.error_message
