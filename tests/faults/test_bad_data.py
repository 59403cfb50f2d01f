"""Hostile data: huge or undecodable error messages, and job types that look like SQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine, inspect

from prefect_nightly_jobs.errors import ConfigurationError, PreCheckError
from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.lock import (
    LockAcquired,
    PreCheckContext,
    acquire_job_lock,
    record_outcome,
)
from prefect_nightly_jobs.models import ERROR_MESSAGE_LIMIT, Status
from prefect_nightly_jobs.settings import enabled_flag_name
from tests.faults.helpers import executions

pytestmark = pytest.mark.faults

POLICY = LockPolicy(5000, 1000)
MEGABYTE = 1024 * 1024


def _fail_with(engine: Engine, job_type: str, error: BaseException) -> str:
    result = acquire_job_lock(engine, job_type, policy=POLICY)
    assert isinstance(result, LockAcquired)
    with pytest.raises(type(error)), result.lease:
        raise error
    (row,) = executions(engine, job_type)
    assert row.status == Status.FAILURE
    assert row.completed_at is not None
    message: str = row.error_message
    return message


def test_huge_error_message_is_truncated_keeping_its_start(engine: Engine) -> None:
    stored = _fail_with(engine, "huge", RuntimeError("disk full: " + "é" * MEGABYTE))
    assert len(stored) <= ERROR_MESSAGE_LIMIT
    assert stored.startswith("RuntimeError: disk full: éééé")
    assert stored.endswith("characters]")
    assert "truncated" in stored


def test_undecodable_error_message_is_stored_readably(engine: Engine) -> None:
    raw = "bad \udcff surrogate, \ud800 lone half, nul \x00 byte, \x00\x00 end"
    stored = _fail_with(engine, "undecodable", ValueError(raw))
    assert "\x00" not in stored
    stored.encode("utf-8")  # valid UTF-8 from end to end
    assert stored.startswith("ValueError: bad ? surrogate, ? lone half, nul \\0 byte")
    assert stored.endswith("\\0\\0 end")


def test_bytes_message_is_stored_as_text(engine: Engine) -> None:
    stored = _fail_with(engine, "byte_message", OSError(b"\xff\xfe\x00 raw bytes"))
    assert stored == "OSError: b'\\xff\\xfe\\x00 raw bytes'"


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


def test_exception_whose_str_raises_still_ends_the_row(engine: Engine) -> None:
    """The finish must not depend on the job's exception being printable."""
    stored = _fail_with(engine, "unprintable", _UnprintableError())
    assert stored == "_UnprintableError: <exception str() failed>"


def test_password_in_an_error_message_is_masked(engine: Engine) -> None:
    stored = _fail_with(
        engine,
        "leaky",
        ConnectionError("cannot reach postgresql://app:s3cr3t-pw@db.internal:5432/app"),
    )
    assert "s3cr3t-pw" not in stored
    assert "postgresql://app:***@db.internal:5432/app" in stored


def test_huge_reason_and_pre_check_error_are_truncated(engine: Engine) -> None:
    record_outcome(engine, "huge_skip", Status.SKIPPED, "upstream said: " + "\x00" * MEGABYTE)
    (skip,) = executions(engine, "huge_skip")
    assert len(skip.error_message) <= ERROR_MESSAGE_LIMIT
    assert skip.error_message.startswith("upstream said: \\0\\0")

    def exploding_check(ctx: PreCheckContext) -> str | None:
        raise LookupError("pre-check blew up \udcff " + "x" * MEGABYTE)

    with pytest.raises(PreCheckError) as raised:
        acquire_job_lock(engine, "huge_check", policy=POLICY, pre_check=exploding_check)
    assert len(str(raised.value)) <= ERROR_MESSAGE_LIMIT
    (row,) = executions(engine, "huge_check")
    assert row.id == raised.value.execution_id
    assert row.status == Status.FAILURE
    assert row.error_message.startswith("pre-check failed: LookupError: pre-check blew up ? xxx")
    assert len(row.error_message) <= ERROR_MESSAGE_LIMIT


SQL_LOOKING = [
    "x'; DROP TABLE job_execution; --",
    "job_execution; DELETE FROM job_execution",
    "Robert'); DROP TABLE job_lock;--",
    "a' OR '1'='1",
    "import_events\x00; DROP TABLE job_lock",
    "import_events\nDROP TABLE job_lock",
    "",
    "x" * 101,
]


@pytest.mark.parametrize("job_type", SQL_LOOKING, ids=range(len(SQL_LOOKING)))
def test_job_type_that_looks_like_sql_is_rejected_in_one_line(
    engine: Engine, job_type: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        acquire_job_lock(engine, job_type, policy=POLICY)
    message = str(raised.value)
    assert "\n" not in message
    assert "is not a lowercase identifier" in message
    assert message.endswith("rename it")
    with pytest.raises(ConfigurationError):
        record_outcome(engine, job_type, Status.SKIPPED, "never written")
    assert "job_execution" in set(inspect(engine).get_table_names())
    assert executions(engine) == []


@pytest.mark.parametrize("job_type", ["select", "drop_table_job_execution", "or_1_1", "union"])
def test_identifier_that_is_sql_is_handled_as_data(engine: Engine, job_type: str) -> None:
    record_outcome(engine, "bystander", Status.SKIPPED, "must survive")
    result = acquire_job_lock(engine, job_type, policy=POLICY, period=date(2026, 1, 1))
    assert isinstance(result, LockAcquired)
    with result.lease:
        pass
    assert enabled_flag_name(job_type) == f"{job_type.upper()}_ENABLED"
    rows = executions(engine)
    assert [(r.job_type, r.status) for r in rows] == [
        ("bystander", Status.SKIPPED),
        (job_type, Status.SUCCESS),
    ]
