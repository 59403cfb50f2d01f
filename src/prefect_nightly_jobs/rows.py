"""Execution rows that end as soon as they are written: skips and failures that never ran.

Plain SQLAlchemy, no Prefect. The lock records its losers here, and the task records a job that
was disabled or blocked by an upstream.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from sqlalchemy import Connection, Engine

from prefect_nightly_jobs.clock import db_now
from prefect_nightly_jobs.database import one_statement, translated_errors
from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.lease import clean_message
from prefect_nightly_jobs.models import JOB_TYPE_LENGTH, Status
from prefect_nightly_jobs.models import job_execution as _exec
from prefect_nightly_jobs.outcome import SkipKind

_JOB_TYPE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Origin:
    """Who is running: stored on the row so operators can find the process and the Prefect run."""

    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    flow_run_id: str | None = None
    task_run_id: str | None = None
    attempt: int | None = None

    def row(self, job_type: str, period: date | None) -> dict[str, Any]:
        return {
            "job_type": validate_job_type(job_type),
            "period": period,
            "owner": self.owner,
            "flow_run_id": self.flow_run_id,
            "task_run_id": self.task_run_id,
            "attempt": self.attempt,
        }


def validate_job_type(job_type: str) -> str:
    if not _JOB_TYPE.fullmatch(job_type) or len(job_type) > JOB_TYPE_LENGTH:
        raise ConfigurationError(
            f"job type {job_type[:120]!r} is not a lowercase identifier "
            f"(letters, digits, underscores, at most {JOB_TYPE_LENGTH} characters): rename it"
        )
    return job_type


def insert_finished(
    conn: Connection,
    values: dict[str, Any],
    status: Status,
    reason: str,
    skip_kind: SkipKind | None = None,
) -> int:
    """A row that starts and ends at the same database instant; returns its id."""
    kind = skip_kind.value if skip_kind is not None else None
    row = {**values, "status": status.value, "once_per_period": False, "skip_kind": kind}
    statement = _exec.insert().values(
        **row, error_message=clean_message(reason), started_at=db_now(), completed_at=db_now()
    )
    return int(conn.execute(statement.returning(_exec.c.id)).scalar_one())


def record_outcome(
    engine: Engine,
    job_type: str,
    status: Literal[Status.SKIPPED, Status.FAILURE],
    reason: str,
    *,
    period: date | None = None,
    origin: Origin | None = None,
    skip_kind: SkipKind | None = None,
) -> int:
    """Record an execution that never ran (disabled, upstream failed) with its reason."""
    values = (origin or Origin()).row(job_type, period)
    with translated_errors(engine.url), one_statement(engine) as conn:
        return insert_finished(conn, values, status, reason, skip_kind)
