"""What operators ask about executions: the latest ones, the history, and releasing a stuck lock.

Plain SQLAlchemy, no Prefect. Every age and duration is computed from timestamps the database wrote
and the database's own "now", read in the same statement, so a worker's clock never matters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, Row, Select, select, update

from prefect_nightly_jobs.clock import db_now
from prefect_nightly_jobs.database import translated_errors
from prefect_nightly_jobs.errors import LockError
from prefect_nightly_jobs.lease import clean_message
from prefect_nightly_jobs.lock import validate_job_type
from prefect_nightly_jobs.models import Status, status_is
from prefect_nightly_jobs.models import job_execution as _exec
from prefect_nightly_jobs.outcome import SkipKind

RELEASED_PREFIX = "released by operator: "
MAX_HISTORY = 10_000


@dataclass(frozen=True)
class ExecutionRecord:
    """One ``job_execution`` row as operators see it, with ages measured by the database clock."""

    id: int
    job_type: str
    status: Status
    period: date | None
    started_at: datetime
    completed_at: datetime | None
    heartbeat_at: datetime | None
    message: str | None
    owner: str | None
    flow_run_id: str | None
    task_run_id: str | None
    attempt: int | None
    # SKIPPED rows: why, as data (``SkipKind``); None otherwise and for rows older than the column.
    skip_kind: SkipKind | None
    # completed - started; for a RUNNING row, how long it has been running so far.
    duration_s: float
    # RUNNING rows only: time since the last heartbeat (or the start, before the first beat).
    heartbeat_age_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_type": self.job_type,
            "status": self.status.value,
            "period": self.period.isoformat() if self.period else None,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "duration_s": round(self.duration_s, 3),
            "heartbeat_age_s": (
                round(self.heartbeat_age_s, 3) if self.heartbeat_age_s is not None else None
            ),
            "message": self.message,
            "skip_kind": self.skip_kind.value if self.skip_kind is not None else None,
            "owner": self.owner,
            "flow_run_id": self.flow_run_id,
            "task_run_id": self.task_run_id,
            "attempt": self.attempt,
        }


@dataclass(frozen=True)
class JobState:
    """A job type's latest finished execution and its RUNNING one, if any."""

    job_type: str
    last: ExecutionRecord | None
    running: ExecutionRecord | None


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    jobs: list[JobState]


@dataclass(frozen=True)
class HistoryReport:
    now: datetime
    executions: list[ExecutionRecord]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


def _columns(query: Select[Any]) -> Select[Any]:
    return query.add_columns(
        _exec.c.id,
        _exec.c.job_type,
        _exec.c.status,
        _exec.c.period,
        _exec.c.started_at,
        _exec.c.completed_at,
        _exec.c.heartbeat_at,
        _exec.c.error_message,
        _exec.c.owner,
        _exec.c.flow_run_id,
        _exec.c.task_run_id,
        _exec.c.attempt,
        _exec.c.skip_kind,
        db_now().label("now"),
    )


def _skip_kind(value: str | None) -> SkipKind | None:
    # A value this version does not know (written by a newer one) reads as "not recorded".
    try:
        return SkipKind(value) if value is not None else None
    except ValueError:
        return None


def _record(row: Row[Any]) -> ExecutionRecord:
    status = Status(row.status)
    now: datetime = row.now
    end = row.completed_at if row.completed_at is not None else now
    age = None
    if status is Status.RUNNING:
        last_sign = row.heartbeat_at if row.heartbeat_at is not None else row.started_at
        age = max(0.0, (now - last_sign).total_seconds())
    return ExecutionRecord(
        id=int(row.id),
        job_type=row.job_type,
        status=status,
        period=row.period,
        started_at=row.started_at,
        completed_at=row.completed_at,
        heartbeat_at=row.heartbeat_at,
        message=row.error_message,
        owner=row.owner,
        flow_run_id=row.flow_run_id,
        task_run_id=row.task_run_id,
        attempt=row.attempt,
        skip_kind=_skip_kind(row.skip_kind),
        duration_s=max(0.0, (end - row.started_at).total_seconds()),
        heartbeat_age_s=age,
    )


def job_states(engine: Engine, job_types: Iterable[str]) -> StatusReport:
    """For each job type, in the given order: its newest finished row and its RUNNING row.

    Job types that are not listed but have a RUNNING row (a job removed from the catalog while it
    ran, say) are appended, so a stuck lock is never invisible.
    """
    wanted = list(dict.fromkeys(job_types))
    with translated_errors(engine.url), engine.connect() as conn:
        now: datetime = conn.execute(select(db_now())).scalar_one()
        running = {
            rec.job_type: rec
            for rec in map(
                _record,
                conn.execute(
                    _columns(select()).where(status_is(Status.RUNNING)).order_by(_exec.c.id)
                ),
            )
        }
        states: list[JobState] = []
        for job_type in [*wanted, *(t for t in running if t not in wanted)]:
            # Newest first along ix_job_execution_type_id: an index probe whatever the history size.
            last = conn.execute(
                _columns(select())
                .where(_exec.c.job_type == job_type, _exec.c.status != Status.RUNNING)
                .order_by(_exec.c.id.desc())
                .limit(1)
            ).first()
            states.append(
                JobState(
                    job_type=job_type,
                    last=_record(last) if last is not None else None,
                    running=running.get(job_type),
                )
            )
        conn.rollback()
    return StatusReport(now=now, jobs=states)


def history(
    engine: Engine,
    job_type: str | None = None,
    *,
    limit: int = 20,
    status: Status | None = None,
    ran_only: bool = False,
) -> HistoryReport:
    """Recent executions, newest first, optionally of one job type and/or one status;
    ``ran_only`` leaves out SKIPPED rows (runs that did no work, e.g. for a chart of durations)."""
    if not 1 <= limit <= MAX_HISTORY:
        raise ValueError(f"limit must be between 1 and {MAX_HISTORY}, got {limit}")
    query = _columns(select()).order_by(_exec.c.id.desc()).limit(limit)
    if job_type is not None:
        query = query.where(_exec.c.job_type == validate_job_type(job_type))
    if status is not None:
        query = query.where(status_is(status))
    if ran_only:
        query = query.where(~status_is(Status.SKIPPED))
    with translated_errors(engine.url), engine.connect() as conn:
        now: datetime = conn.execute(select(db_now())).scalar_one()
        rows = [_record(row) for row in conn.execute(query)]
        conn.rollback()
    return HistoryReport(now=now, executions=rows)


def unlock(engine: Engine, job_type: str, reason: str) -> ExecutionRecord:
    """End the job type's RUNNING execution as FAILURE "released by operator: <reason>".

    The update is conditional on the row still being RUNNING, like every final write, so it races
    safely with the job finishing on its own. The running job's heartbeat and final write then find
    the row taken away: it reports that it lost its lock instead of overwriting the audit.
    """
    validate_job_type(job_type)
    why = " ".join(reason.split())
    if not why:
        raise LockError("--reason must not be empty: say why the lock is released (kept as audit)")
    message = clean_message(RELEASED_PREFIX + why)
    stmt = (
        update(_exec)
        .where(_exec.c.job_type == job_type, status_is(Status.RUNNING))
        .values(status=Status.FAILURE, completed_at=db_now(), error_message=message)
        .returning(_exec.c.id)
    )
    with translated_errors(engine.url):
        with engine.begin() as conn:
            released = conn.execute(stmt).scalar()
        if released is None:
            raise LockError(
                f"job {job_type!r} has no RUNNING execution: nothing to unlock "
                "(see `jobctl status`)"
            )
        with engine.connect() as conn:
            row = conn.execute(_columns(select()).where(_exec.c.id == released)).one()
            conn.rollback()
    return _record(row)
