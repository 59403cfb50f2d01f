"""Ending dead runs: a RUNNING row whose last sign of life is older than the threshold.

Used by every acquisition (for its own job type, inside its transaction) and by the sweep that the
nightly flow and ``jobctl reap`` run over every job type. Plain SQLAlchemy, no Prefect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Integer, bindparam, func, select, update

from prefect_nightly_jobs import liveness
from prefect_nightly_jobs.clock import db_now, is_stale
from prefect_nightly_jobs.database import translated_errors, write_transaction
from prefect_nightly_jobs.models import Status, status_is
from prefect_nightly_jobs.models import job_execution as _exec

log = logging.getLogger("prefect_nightly_jobs.reaper")
_LAST_BEAT = func.coalesce(_exec.c.heartbeat_at, _exec.c.started_at)
# Built once, with bind parameters (stale_ms, job_type, execution_id, message).
_STALE = is_stale(_LAST_BEAT, bindparam("stale_ms", type_=Integer()))
_CANDIDATES = select(
    _exec.c.id,
    _exec.c.job_type,
    _LAST_BEAT.label("last_beat"),
    _exec.c.flow_run_id,
    _exec.c.task_run_id,
).where(status_is(Status.RUNNING), _STALE)
_CANDIDATES_OF_TYPE = _CANDIDATES.where(_exec.c.job_type == bindparam("job_type"))
# The age test again, under the row lock: a beat that committed meanwhile wins.
_REAP = (
    update(_exec)
    .where(_exec.c.id == bindparam("execution_id"), status_is(Status.RUNNING), _STALE)
    .values(
        status=Status.FAILURE.value,
        completed_at=db_now(),
        error_message=bindparam("message"),
        # Prefect is told by the reconcile sweep: its runs set Crashed, a "reaped" event.
        prefect_pending=True,
    )
)


@dataclass(frozen=True)
class Reaped:
    """A RUNNING row that was ended as FAILURE because its holder had gone silent."""

    execution_id: int
    job_type: str
    message: str
    flow_run_id: str | None
    task_run_id: str | None


def reap_stale(conn: Connection, stale_after_ms: int, job_type: str | None = None) -> list[Reaped]:
    """In the caller's transaction, end every stale RUNNING row (of ``job_type``, or all).

    Stale: no heartbeat (or start) within ``stale_after_ms`` by the database clock, and on SQLite
    also no live process holding the lease (see ``jobs.liveness``). The UPDATE repeats the age
    test: on PostgreSQL a beat that commits while we wait for its row lock is seen by the re-check,
    so a run that has just proved it is alive is not reaped.
    """
    leases = liveness.lease_dir(conn.engine.url)
    query = _CANDIDATES if job_type is None else _CANDIDATES_OF_TYPE
    params = {"stale_ms": stale_after_ms, "job_type": job_type}
    reaped: list[Reaped] = []
    for row in conn.execute(query, params).all():
        if liveness.is_alive(leases, row.id):
            continue  # its process is alive and holds the lease: silent, not dead
        message = (
            f"abandoned: no heartbeat since {row.last_beat.isoformat(timespec='milliseconds')} "
            f"(STALE_JOB_THRESHOLD_MS={stale_after_ms})"
        )
        reap = {"execution_id": row.id, "stale_ms": stale_after_ms, "message": message}
        ended = conn.execute(_REAP, reap).rowcount
        if ended == 1:
            log.warning("[%s] reaped execution %d: %s", row.job_type, row.id, message)
            reaped.append(Reaped(row.id, row.job_type, message, row.flow_run_id, row.task_run_id))
    return reaped


def sweep(engine: Engine, stale_after_ms: int) -> list[Reaped]:
    """End every stale RUNNING row of every job type (disabled ones too), in one transaction."""
    with translated_errors(engine.url), write_transaction(engine) as conn:
        return reap_stale(conn, stale_after_ms)
