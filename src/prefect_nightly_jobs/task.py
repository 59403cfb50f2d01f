"""``@background_job``: a plain function becomes a Prefect task guarded by the database lock.

Inside the task, in this order: the enable flag (disabled → SKIPPED), an upstream failure reported
by the flow (→ SKIPPED), the lock with its pre-checks (not acquired → SKIPPED), then the body inside
the lease, then the final status. Every path ends with a row in ``job_execution`` and the matching
Prefect state (see ``jobs.prefect_states``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from typing import Any, cast

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.exceptions import ExternalSignal, PrefectSignal
from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session, SessionTransaction

from prefect_nightly_jobs import cancellation, interrupts
from prefect_nightly_jobs.context import JobContext, JobLogger
from prefect_nightly_jobs.database import for_writing
from prefect_nightly_jobs.engines import lock_policy, shared_engine
from prefect_nightly_jobs.errors import JobsError, PreCheckError
from prefect_nightly_jobs.events import emit_outcome
from prefect_nightly_jobs.lease import Finish, Lease, clean_message, describe_exception
from prefect_nightly_jobs.lock import Origin, PreCheck, acquire_job_lock, record_outcome
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import Blocker, JobOutcome, SkipKind
from prefect_nightly_jobs.prefect_states import (
    current_origin,
    quiet_stray_tracebacks,
    run_logger,
    state_for,
)
from prefect_nightly_jobs.registry import JobSpec
from prefect_nightly_jobs.schedule import run_period
from prefect_nightly_jobs.settings import enabled_flag_name, get_settings, job_enabled

__all__ = ["BackgroundJob", "JobContext", "background_job"]

SyncBody = Callable[[JobContext], None]
AsyncBody = Callable[[JobContext], Awaitable[None]]
JobBody = SyncBody | AsyncBody

quiet_stray_tracebacks()
# Prefect's termination and cancellation signals stop the run; they are not the job's failure.
interrupts.add_interruption(ExternalSignal)
interrupts.add_interruption(PrefectSignal)
cancellation.install()


class _Attempt:
    """One attempt of one job: Prefect retries make a new attempt, and a new row."""

    def __init__(
        self, spec: JobSpec, period: date | None, force: bool, skip_done: bool = False
    ) -> None:
        self.spec = spec
        self.job_type = spec.job_type
        self.force = force
        self.skip_done = skip_done
        self.started = time.monotonic()
        self.logger = JobLogger(run_logger(f"prefect_nightly_jobs.{spec.job_type}"), spec.job_type)
        self.origin: Origin = current_origin()
        self.period = period
        self.engine: Engine | None = None
        self.lease: Lease | None = None
        self.outcome: JobOutcome | None = None
        self.lock_lost = False

    def _end(
        self,
        status: Status,
        reason: str | None,
        execution_id: int | None,
        skip_kind: SkipKind | None = None,
    ) -> JobOutcome:
        self.outcome = JobOutcome(
            job_type=self.job_type,
            status=status,
            reason=reason,
            execution_id=execution_id,
            duration_s=round(time.monotonic() - self.started, 3),
            skip_kind=skip_kind,
        )
        return self.outcome

    def _skip(self, kind: SkipKind, reason: str) -> JobOutcome:
        assert self.engine is not None
        row = record_outcome(
            self.engine,
            self.job_type,
            Status.SKIPPED,
            reason,
            period=self.period,
            origin=self.origin,
            skip_kind=kind,
        )
        self.logger.info("SKIPPED: %s (execution %d)", reason, row)
        return self._end(Status.SKIPPED, reason, row, kind)

    def begin(self, blocked_by: Blocker | None) -> JobOutcome | None:
        """Everything before the body; an outcome here means the body does not run."""
        try:
            settings = get_settings()
            self.period = self.period or run_period(settings)
            self.engine = shared_engine(settings)
            if not job_enabled(self.job_type):
                flag = enabled_flag_name(self.job_type)
                return self._skip(SkipKind.DISABLED, f"disabled via {flag}")
            if blocked_by is not None:
                return self._skip(blocked_by.kind, blocked_by.reason())
            result = acquire_job_lock(
                self.engine,
                self.job_type,
                policy=lock_policy(settings),
                period=self.period,
                pre_check=self.spec.pre_check,
                origin=self.origin,
                once_per_period=self.spec.once_per_period or self.skip_done,
                force=self.force,
            )
        except PreCheckError as err:
            self.logger.error("FAILURE: %s (execution %d)", err.message, err.execution_id)
            return self._end(Status.FAILURE, err.message, err.execution_id)
        except JobsError as err:
            # Nothing could be recorded (configuration or database unavailable): Prefect says it.
            self.logger.error("FAILURE: %s", err.message)
            return self._end(Status.FAILURE, err.message, None)
        if not result.acquired:
            self.logger.info(
                "SKIPPED: %s (execution %s)", result.reason, result.skipped_execution_id
            )
            return self._end(
                Status.SKIPPED, result.reason, result.skipped_execution_id, result.kind
            )
        self.lease = result.lease
        return None

    @contextmanager
    def running(self) -> Iterator[JobContext]:
        """The body's context: lease (heartbeat, final status) and session (commit/rollback).

        The outcome is what the lease recorded. Any exception of the body, SystemExit and other
        BaseExceptions included, becomes a FAILURE; only interruptions (SIGTERM, cancellation,
        KeyboardInterrupt) propagate, once recorded.
        """
        lease = self.lease
        assert lease is not None and self.engine is not None and self.period is not None
        execution_id = lease.execution.id
        error: BaseException | None = None
        try:
            with lease, job_session(self.engine, lease) as session:
                # DEBUG: the outcome says it; each INFO line costs about as much as the lock's
                # round trips (Prefect renders it on the console and sends it to the API).
                self.logger.debug(
                    "started (execution %d, period %s)", execution_id, self.period.isoformat()
                )
                yield JobContext(
                    job_type=self.job_type,
                    period=self.period,
                    execution_id=execution_id,
                    session=session,
                    logger=self.logger,
                    attempt=self.origin.attempt or 1,
                    _lease=lease,
                )
                # SUCCESS is written in the job's own transaction: data and status commit
                # together, so a release that lands after the last heartbeat still wins. With
                # nothing uncommitted, leaving the lease writes it alone (one round trip).
                if (
                    _holds_work(session)
                    and not lease.succeed_with(session.connection(), session.commit).recorded
                ):
                    session.rollback()
        except GeneratorExit:
            raise
        except BaseException as err:  # noqa: BLE001 - every exit of the body gets an outcome
            error = err
        self._conclude(lease, error)
        if error is not None and interrupts.is_interruption(error):
            raise error

    def _conclude(self, lease: Lease, error: BaseException | None) -> None:
        final = lease.outcome
        execution_id = lease.execution.id
        self.lock_lost = final is not None and final.result == Finish.LOCK_LOST
        if final is not None and final.status == Status.SUCCESS and final.recorded:
            # Prefect's own "Finished in state Completed('recorded as execution N')" says it.
            self.logger.debug("SUCCESS (execution %d)", execution_id)
            self._end(Status.SUCCESS, None, execution_id)
            return
        if final is not None and final.message:
            message = final.message
        elif error is not None:
            message = clean_message(describe_exception(error))
        else:
            message = "failed without an exception"
        exc_info = None if error is None or interrupts.is_interruption(error) else error
        self.logger.error("FAILURE: %s (execution %d)", message, execution_id, exc_info=exc_info)
        self._end(Status.FAILURE, message, execution_id)

    def state(self) -> State[Any]:
        assert self.outcome is not None
        emit_outcome(self.outcome, lock_lost=self.lock_lost)
        return state_for(self.outcome)


class BackgroundJob:
    """A job: its spec (type, dependencies, options), its body and the Prefect task that runs it.

    ``job.task`` takes ``period`` (default: the last schedule interval that has ended, see
    ``schedule.run_period``), ``force`` (skip the pre-checks, never the lock), ``skip_done`` (a
    backfill: skip when this job already succeeded for the period, whatever its own
    ``once_per_period``) and ``blocked_by`` (set by the flow: record a skip).
    """

    def __init__(self, fn: JobBody, spec: JobSpec) -> None:
        self.fn = fn
        self.job_type = spec.job_type
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        runner = _async_runner(spec, fn) if self.is_async else _sync_runner(spec, fn)
        # Prefect derives the task key from the qualified name: give each job its own.
        runner.__name__ = runner.__qualname__ = spec.job_type
        self.task: Task[..., Any] = Task(
            fn=runner,
            name=spec.job_type,
            description=spec.description or None,
            retries=spec.retries,
            retry_delay_seconds=spec.retry_delay_seconds,
            # Never hash the arguments or keep results: no cache lookups, no ERROR lines.
            cache_policy=NO_CACHE,
            persist_result=False,
        )
        self.spec = replace(spec, runner=self)

    def __repr__(self) -> str:
        return f"<BackgroundJob {self.job_type}>"

    def run(
        self,
        *,
        period: date | None = None,
        force: bool = False,
        blocked_by: Blocker | None = None,
        skip_done: bool = False,
    ) -> State[Any]:
        """Run the task to its final state from synchronous code (a sync flow, the CLI).

        A sync job runs in the calling thread, so a signal or cancellation reaches its body
        directly; an async job is submitted to the task runner, which gives it an event loop.
        """
        kwargs = task_arguments(
            period=period, force=force, blocked_by=blocked_by, skip_done=skip_done
        )
        if self.is_async:
            future = self.task.submit(**kwargs)
            future.wait()
            return cast(State[Any], future.state)
        return cast(State[Any], self.task(return_state=True, **kwargs))

    __call__ = run  # the spec's runner: calling a job runs it


def task_arguments(
    *,
    period: date | None,
    force: bool = False,
    blocked_by: Blocker | None = None,
    skip_done: bool = False,
) -> dict[str, Any]:
    """The job task's keyword arguments, defaults left out: Prefect binds and visits each
    argument of every task run."""
    kwargs: dict[str, Any] = {"period": period}
    if force:
        kwargs["force"] = True
    if blocked_by is not None:
        kwargs["blocked_by"] = blocked_by
    if skip_done:
        kwargs["skip_done"] = True
    return kwargs


_LEASE = "prefect_nightly_jobs.lease"


class _JobSession(Session):
    """The body's session; ``info`` holds its lease."""


@event.listens_for(_JobSession, "after_begin")
def _watched_by_lease(session: Session, _transaction: SessionTransaction, conn: Connection) -> None:
    # The lease learns the job's connection, to roll it back first on SIGTERM. One listener for
    # the class: listening on each session costs every job run.
    lease: Lease | None = session.info.get(_LEASE)
    if lease is not None:
        lease.watch_connection(conn.connection.dbapi_connection)


def job_session(engine: Engine, lease: Lease) -> Session:
    """The body's session as the task opens it: writing, and watched by ``lease`` (which rolls
    its transaction back first on SIGTERM)."""
    return _JobSession(for_writing(engine), info={_LEASE: lease})


def _holds_work(session: Session) -> bool:
    """Whether the body left anything to commit: an open transaction or unflushed objects."""
    return session.in_transaction() or bool(session.new or session.dirty or session.deleted)


def _sync_runner(spec: JobSpec, body: JobBody) -> Callable[..., Any]:
    def run(
        *,
        period: date | None = None,
        force: bool = False,
        blocked_by: Blocker | None = None,
        skip_done: bool = False,
    ) -> State[Any]:
        attempt = _Attempt(spec, period, force, skip_done)
        if attempt.begin(blocked_by) is None:
            with attempt.running() as ctx:
                body(ctx)
        return attempt.state()

    return run


def _async_runner(spec: JobSpec, body: JobBody) -> Callable[..., Any]:
    async def run(
        *,
        period: date | None = None,
        force: bool = False,
        blocked_by: Blocker | None = None,
        skip_done: bool = False,
    ) -> State[Any]:
        # The lock calls are short and synchronous; the heartbeat is a thread, so even a body
        # that blocks the event loop keeps beating.
        attempt = _Attempt(spec, period, force, skip_done)
        if attempt.begin(blocked_by) is None:
            with attempt.running() as ctx:
                await body(ctx)  # type: ignore[misc]
        return attempt.state()

    return run


def background_job(
    job_type: str,
    *,
    depends_on: Iterable[str] = (),
    description: str = "",
    once_per_period: bool = False,
    pre_check: PreCheck | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0.0,
    job_variables: Mapping[str, Any] | None = None,
    work_pool: str | None = None,
) -> Callable[[JobBody], BackgroundJob]:
    """Declare a job. ``job_type`` is a ``JobType`` member (or its string value).

    ``depends_on``: job types that must have run first in the nightly flow. ``once_per_period``:
    skip when a SUCCESS exists for this job and period. ``pre_check(ctx) -> reason | None`` runs
    inside the lock transaction. ``retries``: Prefect retries, each attempt gets its own row.
    ``job_variables`` and ``work_pool``: where the job's own flow runs go when the nightly flow
    dispatches to deployments (JOB_DISPATCH=deployments, see ``jobctl deployments``).
    """

    def decorate(fn: JobBody) -> BackgroundJob:
        spec = JobSpec(
            job_type=str(job_type),
            depends_on=tuple(str(d) for d in depends_on),
            description=description or (inspect.getdoc(fn) or "").split("\n\n")[0],
            once_per_period=once_per_period,
            pre_check=pre_check,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            job_variables=dict(job_variables or {}),
            work_pool=work_pool,
        )
        return BackgroundJob(fn, spec)

    return decorate
