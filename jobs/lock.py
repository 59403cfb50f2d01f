"""``acquire_job_lock``: the pessimistic, database-enforced lock for one job type.

Plain SQLAlchemy, no Prefect. The acquisition is one short transaction:

1. lock the job type's row in ``job_lock`` (``SELECT … FOR UPDATE`` on PostgreSQL; the whole
   transaction is ``BEGIN IMMEDIATE`` on SQLite), so acquirers of one type queue and other types
   never wait. Locking a row that always exists is what the naive "lock the RUNNING rows" pattern
   lacks: when nothing runs, it locks nothing. On PostgreSQL the row is first tried without
   waiting (``SKIP LOCKED``); when another acquirer holds it, this one waits for that holder only
   (``FOR SHARE``) and, if a live run then holds the job, skips without joining the queue; if not,
   it queues (``FOR UPDATE``) as usual. Only a holder of the row ever writes;
2. look for a RUNNING row (in a new statement, so it sees what the previous holder committed),
   reaping it as FAILURE if its last heartbeat is older than the threshold. If a live one blocks,
   the transaction has written nothing: it is rolled back at once, which hands the lock row to
   the next acquirer without waiting for a commit, and the SKIPPED row is recorded after it;
3. run the optional pre-check with a session inside this transaction;
4. insert the RUNNING row. The partial unique index refuses a second one whatever happens above;
5. commit, before the job body starts.

On PostgreSQL without a pre-check, steps 1, 2 and 4 of the common case (row free, nothing
running) are one statement: see ``_INSERT_RUNNING_IF_LOCK_FREE``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    exc,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jobs.clock import db_now, is_stale
from jobs.database import one_statement, translated_errors
from jobs.errors import ConfigurationError, PreCheckError
from jobs.lease import Execution, Lease, LockPolicy, clean_message, describe_exception
from jobs.models import JOB_TYPE_LENGTH, Status, status_is
from jobs.models import job_execution as _exec
from jobs.models import job_lock as _lock

log = logging.getLogger("jobs.lock")
_JOB_TYPE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Origin:
    """Who is running: stored on the row so operators can find the process and the Prefect run."""

    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    flow_run_id: str | None = None
    task_run_id: str | None = None
    attempt: int | None = None


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
    kind: Literal["already_running", "pre_check"]
    skipped_execution_id: int | None
    acquired: Literal[False] = False


LockResult = LockAcquired | LockNotAcquired


def validate_job_type(job_type: str) -> str:
    if not _JOB_TYPE.fullmatch(job_type) or len(job_type) > JOB_TYPE_LENGTH:
        raise ConfigurationError(
            f"job type {job_type[:120]!r} is not a lowercase identifier "
            f"(letters, digits, underscores, at most {JOB_TYPE_LENGTH} characters): rename it"
        )
    return job_type


def already_succeeded_for_period(ctx: PreCheckContext) -> str | None:
    """The once-per-period pre-check: skip when this job already succeeded for the period."""
    if ctx.period is None:
        return None
    done = ctx.session.execute(
        select(_exec.c.id)
        .where(
            _exec.c.job_type == ctx.job_type,
            _exec.c.period == ctx.period,
            status_is(Status.SUCCESS),
        )
        .order_by(_exec.c.id.desc())
        .limit(1)
    ).scalar()
    if done is None:
        return None
    return f"already succeeded for period {ctx.period.isoformat()} (execution {done})"


def _row_values(job_type: str, period: date | None, origin: Origin) -> dict[str, object]:
    return {
        "job_type": job_type,
        "period": period,
        "owner": origin.owner,
        "flow_run_id": origin.flow_run_id,
        "task_run_id": origin.task_run_id,
        "attempt": origin.attempt,
    }


# The statements of the hot path are built once, with bind parameters: building and hashing a
# statement on every call cost more Python time than its round trip (bench row 1).
_ROW_COLUMNS = ("job_type", "period", "owner", "flow_run_id", "task_run_id", "attempt")
_LOCK_ROW_OF = select(_lock.c.job_type).where(
    _lock.c.job_type == bindparam("job_type", type_=_lock.c.job_type.type)
)
_LOCK_ROW = _LOCK_ROW_OF.with_for_update()  # wait in line
_TRY_LOCK_ROW = _LOCK_ROW_OF.with_for_update(skip_locked=True)  # no row: someone holds it
_SHARE_LOCK_ROW = _LOCK_ROW_OF.with_for_update(read=True)  # FOR SHARE: wait for the holder only
# The RUNNING row's values, selected only when no RUNNING row of the job type exists.
_RUNNING_ROW_IF_NONE = select(
    *(bindparam(name, type_=_exec.c[name].type) for name in _ROW_COLUMNS),
    literal(Status.RUNNING.value, _exec.c.status.type),
    db_now(),
).where(~exists().where(_exec.c.job_type == bindparam("job_type"), status_is(Status.RUNNING)))
_RUNNING_COLUMNS = [*_ROW_COLUMNS, "status", "started_at"]
# One round trip for the common case: insert unless a RUNNING row exists.
_INSERT_RUNNING_IF_NONE = (
    insert(_exec)
    .from_select(_RUNNING_COLUMNS, _RUNNING_ROW_IF_NONE)
    .returning(_exec.c.id, _exec.c.started_at)
)
# PostgreSQL, no pre-check: take the lock row if free and insert, in one statement that also says
# whether it got the row (``locked``), so that neither outcome needs another round trip to find
# out. Nothing is inserted unless this transaction holds the row. The statement's snapshot
# predates the lock, so a holder that committed a RUNNING row in between is not seen: the unique
# index then refuses the insert, and that acquirer is recorded as SKIPPED "already running".
_LOCKED_IF_FREE = _TRY_LOCK_ROW.cte("locked_if_free")
_INSERTED = (
    insert(_exec)
    .from_select(_RUNNING_COLUMNS, _RUNNING_ROW_IF_NONE.select_from(_LOCKED_IF_FREE))
    .returning(_exec.c.id, _exec.c.started_at)
    .cte("inserted")
)
_ONE_ROW = select(literal(1).label("one")).subquery("one_row")
_INSERT_RUNNING_IF_LOCK_FREE = select(
    select(func.count()).select_from(_LOCKED_IF_FREE).scalar_subquery().label("locked"),
    _INSERTED.c.id,
    _INSERTED.c.started_at,
).select_from(_ONE_ROW.outerjoin(_INSERTED, true()))
_INSERT_RUNNING = (
    insert(_exec)
    .values(status=Status.RUNNING.value, started_at=db_now())
    .returning(_exec.c.id, _exec.c.started_at)
)
_INSERT_FINISHED = (
    insert(_exec)
    .values(started_at=db_now(), completed_at=db_now())  # one statement: the same instant
    .returning(_exec.c.id)
)


def _try_lock_job_type(conn: Connection, job_type: str) -> bool:
    """Take the lock row if nobody holds it (the common case, at no extra cost); False if it is
    held (or does not exist yet). SQLite's BEGIN IMMEDIATE has already serialized us."""
    if conn.dialect.name != "postgresql":
        _lock_job_type(conn, job_type)
        return True
    return conn.execute(_TRY_LOCK_ROW, {"job_type": job_type}).first() is not None


def _lock_job_type(conn: Connection, job_type: str) -> None:
    if conn.execute(_LOCK_ROW, {"job_type": job_type}).first() is not None:
        return
    # First use of this job type: create its lock row. Concurrent creators wait on the unique key,
    # then everybody queues on the row lock below.
    upsert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(upsert(_lock).values(job_type=job_type).on_conflict_do_nothing())
    conn.execute(_LOCK_ROW, {"job_type": job_type}).one()


def _insert_finished(
    conn: Connection, status: Status, reason: str, values: dict[str, object]
) -> int:
    params = {**values, "status": status.value, "error_message": clean_message(reason)}
    return int(conn.execute(_INSERT_FINISHED, params).scalar_one())


def _execution(execution_id: int, started_at: datetime, values: dict[str, object]) -> Execution:
    return Execution(
        id=int(execution_id),
        job_type=str(values["job_type"]),
        period=values["period"],  # type: ignore[arg-type]
        started_at=started_at,
    )


def _insert_running(
    conn: Connection, values: dict[str, object], *, if_none: bool
) -> Execution | None:
    row = conn.execute(_INSERT_RUNNING_IF_NONE if if_none else _INSERT_RUNNING, values).first()
    return None if row is None else _execution(row.id, row.started_at, values)


def _insert_running_if_lock_free(
    conn: Connection, values: dict[str, object]
) -> tuple[bool, Execution | None]:
    """(holds the lock row, the RUNNING execution if inserted)."""
    row = conn.execute(_INSERT_RUNNING_IF_LOCK_FREE, values).one()
    inserted = None if row.id is None else _execution(row.id, row.started_at, values)
    return bool(row.locked), inserted


def _blocking_run(conn: Connection, job_type: str, policy: LockPolicy) -> str | None:
    """Describe the live RUNNING row, after reaping it if stale; None when nothing blocks."""
    blocked = "already running"
    # Two passes at most: a reap that finds the row changed re-reads it (see _reap).
    for _ in range(2):
        running = _running_row(conn, job_type, policy)
        if running is None:
            return None
        last: datetime = running.last_beat
        blocked = f"already running: execution {running.id} on {running.owner or 'unknown'}"
        if not running.stale:
            return _already_running(running)
        if _reap(conn, job_type, running.id, last, policy):
            return None
    return blocked


def _running_row(conn: Connection, job_type: str, policy: LockPolicy) -> Row[Any] | None:
    last_beat = func.coalesce(_exec.c.heartbeat_at, _exec.c.started_at)
    return conn.execute(
        select(
            _exec.c.id,
            _exec.c.owner,
            _exec.c.started_at,
            last_beat.label("last_beat"),
            is_stale(last_beat, policy.stale_after_ms).label("stale"),
            db_now().label("now"),
        ).where(_exec.c.job_type == job_type, status_is(Status.RUNNING))
    ).first()


def _already_running(running: Row[Any]) -> str:
    age = (running.now - running.last_beat).total_seconds()
    return (
        f"already running: execution {running.id} on {running.owner or 'unknown'}, "
        f"last heartbeat {age:.1f}s ago"
    )


def _observe(conn: Connection, job_type: str, policy: LockPolicy) -> None:
    """The lock row is held, most often by another acquirer in its short transaction. Wait for
    that holder only (FOR SHARE: observers do not queue behind one another), then raise
    ``_BlockedError`` if a live run holds the job. Otherwise return: the caller queues for the
    lock row, which alone may reap a stale run, run the pre-check and insert."""
    conn.execute(_SHARE_LOCK_ROW, {"job_type": job_type})
    running = _running_row(conn, job_type, policy)
    if running is not None and not running.stale:
        raise _BlockedError(_already_running(running))


def _reap(
    conn: Connection, job_type: str, execution_id: int, last: datetime, policy: LockPolicy
) -> bool:
    """Mark a stale RUNNING row FAILURE; False if it turned out alive (or finished) meanwhile.

    The staleness test is repeated in the UPDATE: on PostgreSQL the row read above may be an old
    version while a heartbeat's UPDATE holds the row; when that beat commits, PostgreSQL re-checks
    this WHERE clause on the new version, so a run that has just proved it is alive is not reaped.
    """
    last_beat = func.coalesce(_exec.c.heartbeat_at, _exec.c.started_at)
    message = (
        f"abandoned: no heartbeat since {last.isoformat(timespec='milliseconds')} "
        f"(STALE_JOB_THRESHOLD_MS={policy.stale_after_ms})"
    )
    reaped = conn.execute(
        update(_exec)
        .where(
            _exec.c.id == execution_id,
            status_is(Status.RUNNING),
            is_stale(last_beat, policy.stale_after_ms),
        )
        .values(status=Status.FAILURE, completed_at=db_now(), error_message=message)
    ).rowcount
    if reaped != 1:
        return False
    log.warning("[%s] reaped execution %d: %s", job_type, execution_id, message)
    return True


def _run_pre_check(
    conn: Connection, pre_check: PreCheck, job_type: str, period: date | None
) -> str | None:
    with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
        reason = pre_check(PreCheckContext(session=session, job_type=job_type, period=period))
        session.flush()
    return reason


class _PreCheckRaisedError(Exception):
    pass


class _QueueError(Exception):
    """Leave the observing transaction (rolled back) to queue for the lock row."""


class _BlockedError(Exception):
    """A live run holds the job: leave the lock transaction by rolling it back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def acquire_job_lock(
    engine: Engine,
    job_type: str,
    *,
    policy: LockPolicy | None = None,
    period: date | None = None,
    pre_check: PreCheck | None = None,
    origin: Origin | None = None,
    run_pre_check: bool = True,
) -> LockResult:
    """Try to start an execution of ``job_type``; see the module docstring for the protocol.

    Returns ``LockAcquired`` (use its lease as a context manager around the job body) or
    ``LockNotAcquired`` (a SKIPPED row with the reason is already recorded). A pre-check that raises
    is recorded as a FAILURE row and re-raised as ``PreCheckError``.
    """
    validate_job_type(job_type)
    policy = policy or LockPolicy()
    values = _row_values(job_type, period, origin or Origin())
    check = pre_check if run_pre_check else None
    with translated_errors(engine.url):
        try:
            return _acquire(engine, job_type, policy, values, check)
        except exc.IntegrityError as err:
            if "uq_job_execution_running" not in str(
                err.orig
            ) and "job_execution.job_type" not in str(err.orig):
                raise
            # A holder committed its RUNNING row between the snapshot and the lock of the one-
            # statement path (see _INSERT_RUNNING_IF_LOCK_FREE), or a writer bypassed the lock row:
            # either way the database refused a second runner, and this attempt is a skip.
            reason = "already running: the database refused a second RUNNING row"
            with one_statement(engine) as conn:
                skip_id = _insert_finished(conn, Status.SKIPPED, reason, values)
            return LockNotAcquired(
                reason=reason, kind="already_running", skipped_execution_id=skip_id
            )
        except _PreCheckRaisedError as raised:
            cause = raised.__cause__ or raised
            message = f"pre-check failed: {describe_exception(cause)}"
            with one_statement(engine) as conn:
                failed_id = _insert_finished(conn, Status.FAILURE, message, values)
            raise PreCheckError(clean_message(message), failed_id) from cause


def _acquire(
    engine: Engine,
    job_type: str,
    policy: LockPolicy,
    values: dict[str, object],
    pre_check: PreCheck | None,
) -> LockResult:
    try:
        try:
            with engine.begin() as conn:
                if pre_check is None and conn.dialect.name == "postgresql":
                    # The common case in one round trip: the row was free and nothing runs.
                    locked, execution = _insert_running_if_lock_free(conn, values)
                    if execution is not None:
                        return LockAcquired(lease=Lease(engine, execution, policy))
                else:
                    locked = _try_lock_job_type(conn, job_type)
                if locked:
                    return _decide(
                        conn, engine, job_type, policy, values=values, pre_check=pre_check
                    )
                _observe(conn, job_type, policy)
                # Nothing blocks: queue for the lock row in a new transaction. Upgrading the
                # shared lock in place would deadlock two observers doing the same.
                raise _QueueError
        except _QueueError:
            pass
        with engine.begin() as conn:
            _lock_job_type(conn, job_type)
            return _decide(conn, engine, job_type, policy, values=values, pre_check=pre_check)
    except _BlockedError as blocked:
        # The transaction that saw the live run wrote nothing (no insert, no reap), so it was
        # rolled back rather than committed: the lock row went to the next acquirer without
        # waiting for a commit to reach the disk, and the skip is recorded outside the lock,
        # beside the other losers' (bench row 4: 32 racers used to queue behind each other).
        with one_statement(engine) as conn:
            skip_id = _insert_finished(conn, Status.SKIPPED, blocked.reason, values)
        return LockNotAcquired(
            reason=blocked.reason, kind="already_running", skipped_execution_id=skip_id
        )


def _decide(
    conn: Connection,
    engine: Engine,
    job_type: str,
    policy: LockPolicy,
    *,
    values: dict[str, object],
    pre_check: PreCheck | None,
) -> LockResult:
    """Holding the lock row: insert the RUNNING row, or say why not."""
    execution = None if pre_check else _insert_running(conn, values, if_none=True)
    if execution is None:
        blocked = _blocking_run(conn, job_type, policy)
        if blocked is not None:
            raise _BlockedError(blocked)
        if pre_check is not None:
            try:
                reason = _run_pre_check(conn, pre_check, job_type, values["period"])  # type: ignore[arg-type]
            except Exception as err:
                raise _PreCheckRaisedError from err
            if reason:
                skip_id = _insert_finished(conn, Status.SKIPPED, reason, values)
                return LockNotAcquired(
                    reason=reason, kind="pre_check", skipped_execution_id=skip_id
                )
        execution = _insert_running(conn, values, if_none=False)
    assert execution is not None  # both insert paths return a row or raise
    return LockAcquired(lease=Lease(engine, execution, policy))


def record_outcome(
    engine: Engine,
    job_type: str,
    status: Literal[Status.SKIPPED, Status.FAILURE],
    reason: str,
    *,
    period: date | None = None,
    origin: Origin | None = None,
) -> int:
    """Record an execution that never ran (disabled, upstream failed) with its reason."""
    validate_job_type(job_type)
    values = _row_values(job_type, period, origin or Origin())
    with translated_errors(engine.url), one_statement(engine) as conn:
        return _insert_finished(conn, status, reason, values)
