"""Prefect and the database made to agree after a crash, within a bound and without a next run.

``reconcile_now`` ends the stale RUNNING rows of every job type (the reaper), then tells Prefect:
each reaped row that carries Prefect ids has its task run, and its flow run if still Pending or
Running, set Crashed with the row's message. Rows are flagged ``prefect_pending`` by the reaper in
the same transaction that ends them, and the flag is cleared only once Prefect has been told, so
an unreachable API is retried at the next sweep; the lock itself never calls the API.

The ``reconcile`` flow runs it on a frequent schedule (prefect.yaml, RECONCILE_INTERVAL_SECONDS),
so a crashed job shows RUNNING / Running anywhere for at most STALE_JOB_THRESHOLD_MS plus one
interval (plus the time a worker takes to start the run). The nightly flow and ``jobctl reap``
call it too. A flow run that Prefect marks Crashed or Cancelled gets its rows ended by the same
rule: only once their heartbeat is stale, since a lease that still beats is alive, whatever
Prefect was told; the database's liveness is what the lock trusts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import Crashed
from sqlalchemy import Engine, bindparam, func, select, update

from prefect_nightly_jobs import liveness
from prefect_nightly_jobs.database import translated_errors, write_transaction
from prefect_nightly_jobs.engines import shared_engine
from prefect_nightly_jobs.events import emit_reaped
from prefect_nightly_jobs.models import job_execution as _exec
from prefect_nightly_jobs.prefect_states import run_logger
from prefect_nightly_jobs.reaper import Reaped, sweep
from prefect_nightly_jobs.settings import get_settings

log = logging.getLogger("prefect_nightly_jobs.reconciliation")
# One attempt per call, no client retries: a hung API costs a sweep seconds, not minutes.
API_TIMEOUT_S = 5.0
_REPORTER_KEY = 0x6E6A5F7265636F6E  # pg advisory lock: one sweep tells Prefect at a time
_BATCH = 100
# A flow run in one of these states is still "running" to a reader; a final one is left alone.
_OPEN = {StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED}

_PENDING_ROWS = (
    select(
        _exec.c.id,
        _exec.c.job_type,
        _exec.c.error_message,
        _exec.c.flow_run_id,
        _exec.c.task_run_id,
    )
    .where(_exec.c.prefect_pending)
    .order_by(_exec.c.id)
    .limit(_BATCH)
)
_TOLD = update(_exec).where(_exec.c.id == bindparam("execution_id")).values(prefect_pending=False)


@dataclass
class Reconciliation:
    """What one sweep did: rows it ended, rows whose Prefect runs it set Crashed, rows left
    pending because the API could not be reached (retried at the next sweep)."""

    reaped: list[Reaped] = field(default_factory=list)
    reported: list[Reaped] = field(default_factory=list)
    still_pending: int = 0
    api_error: str | None = None


def _run_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _crash(client: SyncPrefectClient, dead: Reaped) -> None:
    """Set the dead row's task run, and its flow run if still open, Crashed with its message."""
    message = f"job {dead.job_type}, execution {dead.execution_id}: {dead.message}"
    task_run_id = _run_id(dead.task_run_id or "")
    if task_run_id is not None:
        try:
            task_run = client.read_task_run(task_run_id)
        except ObjectNotFound:
            task_run = None
        if task_run is not None and (task_run.state is None or not task_run.state.is_final()):
            client.set_task_run_state(task_run_id, Crashed(message=message), force=True)
    flow_run_id = _run_id(dead.flow_run_id or "")
    if flow_run_id is not None:
        try:
            flow_run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return
        state = flow_run.state
        if state is None or state.type in _OPEN:
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        elif state.type == StateType.CRASHED and dead.message not in (state.message or ""):
            # The worker saw its process die and said so; add which job died and since when.
            said = f"{state.message}; " if state.message else ""
            client.set_flow_run_state(flow_run_id, Crashed(message=said + message), force=True)


def _pending(engine: Engine) -> list[Reaped]:
    with translated_errors(engine.url), engine.connect() as conn:
        found = conn.execute(_PENDING_ROWS).all()
    return [
        Reaped(r.id, r.job_type, r.error_message or "abandoned", r.flow_run_id, r.task_run_id)
        for r in found
    ]


@contextmanager
def _one_reporter(engine: Engine) -> Iterator[bool]:
    """True for the only sweep that tells Prefect now; two at once would report every row twice.

    PostgreSQL: a session advisory lock (gone with the connection if the sweep dies); SQLite: a
    flock beside the database. Another sweep meanwhile leaves its rows for the next one.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(_REPORTER_KEY))).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(_REPORTER_KEY)))
                    conn.commit()
        return
    with liveness.exclusive(engine.url, "reporter") as got:
        yield got


def _api_known() -> bool:
    # Without PREFECT_API_URL a client would talk to a throwaway server that has never seen these
    # runs (and say "not found"): outside a flow run, such rows wait for a sweep that can see them.
    return bool(PREFECT_API_URL.value()) or FlowRunContext.get() is not None


def report_pending(engine: Engine, result: Reconciliation) -> None:
    """Tell Prefect about every reaped row not yet told (its runs Crashed, a ``reaped`` event);
    stop at the first error: the flags stay, the next sweep tries again."""
    if not _pending(engine):
        return  # the usual sweep: one index probe, no reporter lock, no connection held
    with _one_reporter(engine) as mine:
        if not mine:
            return
        pending = _pending(engine)  # again, under the lock: another reporter may have told them
        if not pending:
            return
        if not _api_known():
            result.still_pending += len(pending)
            result.api_error = "PREFECT_API_URL is not set"
            return
        done: list[Reaped] = []
        try:
            with (
                temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}),
                get_client(sync_client=True, httpx_settings={"timeout": API_TIMEOUT_S}) as client,
            ):
                for dead in pending:
                    _crash(client, dead)
                    with translated_errors(engine.url), write_transaction(engine) as conn:
                        conn.execute(_TOLD, {"execution_id": dead.execution_id})
                    done.append(dead)
                    emit_reaped(dead)
        except Exception as err:  # noqa: BLE001 - unreachable, refusing, or not Prefect at all
            result.api_error = f"{type(err).__name__}: {err}"
        result.reported.extend(done)
        result.still_pending += len(pending) - len(done)


def reconcile_now(engine: Engine, stale_after_ms: int) -> Reconciliation:
    """Reap stale rows of every job type, then bring their Prefect runs to Crashed."""
    result = Reconciliation(reaped=sweep(engine, stale_after_ms))
    report_pending(engine, result)
    return result


def log_reconciliation(result: Reconciliation, logger: Any = log) -> None:
    for dead in result.reaped:
        logger.warning(
            "[%s] reaped execution %d: %s", dead.job_type, dead.execution_id, dead.message
        )
    for dead in result.reported:
        if not (dead.flow_run_id or dead.task_run_id):
            continue  # no run of Prefect's to correct, only the event was sent
        logger.warning(
            "[%s] execution %d: flow run %s / task run %s set Crashed in Prefect",
            dead.job_type,
            dead.execution_id,
            dead.flow_run_id,
            dead.task_run_id,
        )
    if result.still_pending:
        logger.warning(
            "%d reaped execution(s) not yet reported to Prefect (%s); retried at the next sweep",
            result.still_pending,
            result.api_error,
        )


@flow(name="reconcile", persist_result=False, log_prints=False)
def reconcile() -> str:
    """End dead job runs in the database and in Prefect (deployed on a frequent schedule)."""
    settings = get_settings()
    result = reconcile_now(shared_engine(settings), settings.stale_job_threshold_ms)
    log_reconciliation(result, run_logger("prefect_nightly_jobs.reconciliation"))
    summary = (
        f"{len(result.reaped)} reaped, {len(result.reported)} reported to Prefect, "
        f"{result.still_pending} pending"
    )
    get_run_logger().info("%s", summary)
    return summary
