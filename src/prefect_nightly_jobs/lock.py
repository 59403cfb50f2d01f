"""``acquire_job_lock``: the pessimistic, database-enforced lock for one job type.

Plain SQLAlchemy, no Prefect. One algorithm on both databases, in one short transaction that is
committed before the job body starts:

1. with a pre-check or a once-per-period run only: serialize the job type's acquirers
   (``pg_advisory_xact_lock`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes
   every writer), then look for a success of the period (already done) and run the pre-check; a
   reason to skip records a SKIPPED row;
2. ``INSERT`` the RUNNING row ``ON CONFLICT DO NOTHING``. The partial unique indexes are the lock:
   one RUNNING row per job type, one counted run per period for once-per-period jobs. The insert
   returns a row (acquired) or nothing (someone holds it);
3. if nothing was inserted: reap the job type's RUNNING row if it is stale (``jobs.reaper``) and,
   if one was, insert again; otherwise read who holds it and record a SKIPPED row naming it.

No other path writes a RUNNING row, and the database refuses a second one whatever Python does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from prefect_nightly_jobs import liveness
from prefect_nightly_jobs.clock import db_now
from prefect_nightly_jobs.database import translated_errors, write_transaction
from prefect_nightly_jobs.errors import PreCheckError
from prefect_nightly_jobs.lease import (
    Execution,
    Lease,
    LockPolicy,
    clean_message,
    describe_exception,
)
from prefect_nightly_jobs.models import Status, status_is
from prefect_nightly_jobs.models import job_execution as _exec
from prefect_nightly_jobs.outcome import SkipKind
from prefect_nightly_jobs.reaper import reap_stale
from prefect_nightly_jobs.rows import Origin, insert_finished, record_outcome, validate_job_type

__all__ = [
    "LockAcquired",
    "LockNotAcquired",
    "LockResult",
    "Origin",
    "PreCheck",
    "PreCheckContext",
    "acquire_job_lock",
    "already_succeeded_for_period",
    "record_outcome",
    "validate_job_type",
]
# First key of the two-int advisory lock: this plugin's namespace, away from the host app's.
_ADVISORY_NAMESPACE = 0x6A6F6273  # "jobs"


@dataclass(frozen=True)
class PreCheckContext:
    """What a pre-check sees: a session inside the lock transaction, and the run's identity."""

    session: Session
    job_type: str
    period: date | None


PreCheck = Callable[[PreCheckContext], str | None]
"""Returns a reason to skip, or None to run. It may read and write through ``ctx.session``."""


@dataclass(frozen=True)
class LockAcquired:
    lease: Lease
    acquired: Literal[True] = True

    @property
    def execution(self) -> Execution:
        return self.lease.execution


@dataclass(frozen=True)
class LockNotAcquired:
    reason: str
    kind: SkipKind  # ALREADY_RUNNING, ALREADY_DONE or PRE_CHECK
    skipped_execution_id: int
    acquired: Literal[False] = False


LockResult = LockAcquired | LockNotAcquired


def _done_for_period(conn: Connection, job_type: str, period: date | None) -> int | None:
    if period is None:
        return None
    query = select(func.max(_exec.c.id)).where(
        _exec.c.job_type == job_type, _exec.c.period == period, status_is(Status.SUCCESS)
    )
    return conn.execute(query).scalar()


def _done_reason(period: date, execution_id: int) -> str:
    return f"already succeeded for period {period.isoformat()} (execution {execution_id})"


def already_succeeded_for_period(ctx: PreCheckContext) -> str | None:
    """Skip when this job already succeeded for the period (forced runs included)."""
    done = _done_for_period(ctx.session.connection(), ctx.job_type, ctx.period)
    if done is None or ctx.period is None:
        return None
    return _done_reason(ctx.period, done)


_ROW = ("job_type", "period", "owner", "flow_run_id", "task_run_id", "attempt", "once_per_period")


def _insert_running(dialect: Any) -> Any:
    """Built once per dialect, with bind parameters: building it per call cost more than its
    round trip."""
    return (
        dialect.insert(_exec)
        .values({name: bindparam(name, type_=_exec.c[name].type) for name in _ROW})
        .values(status=Status.RUNNING.value, started_at=db_now())
        .on_conflict_do_nothing()  # any unique index: the RUNNING one or the period one
        .returning(_exec.c.id, _exec.c.started_at)
    )


_INSERT_RUNNING = {"postgresql": _insert_running(postgresql), "sqlite": _insert_running(sqlite)}


def _insert(conn: Connection, values: dict[str, Any]) -> Any:
    return conn.execute(_INSERT_RUNNING[conn.dialect.name], values).first()


def _holder(conn: Connection, values: dict[str, Any]) -> tuple[SkipKind, str] | None:
    """Why the insert found its place taken: a live RUNNING row, or a counted period success."""
    last_beat = func.coalesce(_exec.c.heartbeat_at, _exec.c.started_at)
    running = conn.execute(
        select(
            _exec.c.id, _exec.c.owner, last_beat.label("last_beat"), db_now().label("now")
        ).where(_exec.c.job_type == values["job_type"], status_is(Status.RUNNING))
    ).first()
    if running is not None:
        age = (running.now - running.last_beat).total_seconds()  # both by the database clock
        return SkipKind.ALREADY_RUNNING, (
            f"already running: execution {running.id} on {running.owner or 'unknown'}, "
            f"last heartbeat {age:.1f}s ago"
        )
    done = _done_for_period(conn, values["job_type"], values["period"])
    if values["once_per_period"] and done is not None:
        return SkipKind.ALREADY_DONE, _done_reason(values["period"], done)
    return None  # the holder finished between our insert and this read: try again


@dataclass(frozen=True)
class _PreCheckFailed:
    message: str
    execution_id: int
    cause: Exception


def _decide(
    conn: Connection,
    values: dict[str, Any],
    policy: LockPolicy,
    pre_check: PreCheck | None,
) -> Execution | LockNotAcquired | _PreCheckFailed:
    job_type = values["job_type"]
    # Counted runs (once per period, not forced) check for a success of the period first.
    check_done = values["once_per_period"]
    if (pre_check is not None or check_done) and conn.dialect.name == "postgresql":
        key = func.hashtext(job_type)
        conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_NAMESPACE, key)))
    if check_done and (done := _done_for_period(conn, job_type, values["period"])) is not None:
        done_reason = _done_reason(values["period"], done)
        skip_id = insert_finished(conn, values, Status.SKIPPED, done_reason, SkipKind.ALREADY_DONE)
        return LockNotAcquired(done_reason, SkipKind.ALREADY_DONE, skip_id)
    if pre_check is not None:
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            context = PreCheckContext(session=session, job_type=job_type, period=values["period"])
            try:
                reason = pre_check(context)
                session.flush()
            except Exception as err:  # noqa: BLE001 - any pre-check error is its FAILURE
                session.rollback()  # the pre-check's own writes, back to the savepoint
                message = clean_message(f"pre-check failed: {describe_exception(err)}")
                return _PreCheckFailed(
                    message, insert_finished(conn, values, Status.FAILURE, message), err
                )
        if reason:
            skip_id = insert_finished(conn, values, Status.SKIPPED, reason, SkipKind.PRE_CHECK)
            return LockNotAcquired(reason, SkipKind.PRE_CHECK, skip_id)
    for attempt in range(3):
        row = _insert(conn, values)
        if row is not None:
            return Execution(row.id, job_type, values["period"], row.started_at)
        if attempt == 0 and reap_stale(conn, policy.stale_after_ms, job_type):
            continue  # its holder was dead: take its place
        held = _holder(conn, values)
        if held is not None:
            kind, reason = held
            skip_id = insert_finished(conn, values, Status.SKIPPED, reason, kind)
            return LockNotAcquired(reason, kind, skip_id)
    reason = "already running: the lock changed hands three times while acquiring"
    skip_id = insert_finished(conn, values, Status.SKIPPED, reason, SkipKind.ALREADY_RUNNING)
    return LockNotAcquired(reason, SkipKind.ALREADY_RUNNING, skip_id)


def acquire_job_lock(
    engine: Engine,
    job_type: str,
    *,
    policy: LockPolicy | None = None,
    period: date | None = None,
    pre_check: PreCheck | None = None,
    origin: Origin | None = None,
    once_per_period: bool = False,
    force: bool = False,
) -> LockResult:
    """Try to start an execution of ``job_type``; see the module docstring for the algorithm.

    ``once_per_period``: at most one success per ``period``, enforced by a unique index (and a
    pre-check for the message). ``force`` skips the pre-checks and is not counted for the period;
    it never skips the lock. Returns ``LockAcquired`` (enter its lease around the job body) or
    ``LockNotAcquired`` (its SKIPPED row is recorded). A pre-check that raises is recorded as a
    FAILURE row and re-raised as ``PreCheckError``.
    """
    policy = policy or LockPolicy()
    counted = once_per_period and not force and period is not None
    values = {**(origin or Origin()).row(job_type, period), "once_per_period": counted}
    with translated_errors(engine.url), write_transaction(engine) as conn:
        decided = _decide(conn, values, policy, None if force else pre_check)
    if isinstance(decided, _PreCheckFailed):
        raise PreCheckError(decided.message, decided.execution_id) from decided.cause
    if isinstance(decided, LockNotAcquired):
        return decided
    held = liveness.hold(liveness.lease_dir(engine.url), decided.id)
    return LockAcquired(lease=Lease(engine, decided, policy, held=held))
