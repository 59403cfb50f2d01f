"""``@background_job``: a plain function becomes a Prefect task guarded by the database lock.

Inside the task, in this order: the enable flag (disabled → SKIPPED), an upstream failure reported
by the flow (→ SKIPPED), the lock with its pre-checks (not acquired → SKIPPED), then the body inside
the lease, then the final status. Every path ends with a row in ``job_execution`` and the matching
Prefect state (see ``jobs.prefect_states``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from typing import Any, Literal, cast

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from jobs.context import JobContext, JobLogger
from jobs.engines import lock_policy, shared_engine
from jobs.errors import JobsError, LockLostError, PreCheckError
from jobs.lease import Lease, clean_message, describe_exception
from jobs.lock import (
    Origin,
    PreCheck,
    PreCheckContext,
    acquire_job_lock,
    already_succeeded_for_period,
    record_outcome,
)
from jobs.models import Status
from jobs.outcome import JobOutcome
from jobs.prefect_states import current_origin, quiet_stray_tracebacks, run_logger, state_for
from jobs.registry import JobSpec
from jobs.schedule import logical_period
from jobs.settings import enabled_flag_name, get_settings, job_enabled

__all__ = ["BackgroundJob", "JobContext", "background_job"]

SyncBody = Callable[[JobContext], None]
AsyncBody = Callable[[JobContext], Awaitable[None]]
JobBody = SyncBody | AsyncBody

quiet_stray_tracebacks()


def _all_pre_checks(checks: Iterable[PreCheck]) -> PreCheck | None:
    """One pre-check that runs ``checks`` in order; the first reason to skip wins."""
    chain = tuple(checks)
    if not chain:
        return None
    if len(chain) == 1:
        return chain[0]

    def combined(ctx: PreCheckContext) -> str | None:
        for check in chain:
            if reason := check(ctx):
                return reason
        return None

    return combined


def upstream_skip_reason(blocker: str) -> str:
    """``blocker`` is the job type that failed, or a job type and what else stops its dependents
    (e.g. "import_events is still running in another run"): job types contain no spaces."""
    return f"upstream {blocker}" if " " in blocker else f"upstream {blocker} failed"


class _Attempt:
    """One attempt of one job: Prefect retries make a new attempt, and a new row."""

    def __init__(self, spec: JobSpec, period: date | None, force: bool) -> None:
        self.spec = spec
        self.job_type = spec.job_type
        self.force = force
        self.started = time.monotonic()
        self.logger = JobLogger(run_logger(f"jobs.{spec.job_type}"), spec.job_type)
        self.origin: Origin = current_origin()
        self.period = period
        self.engine: Engine | None = None
        self.lease: Lease | None = None
        self.outcome: JobOutcome | None = None

    def _end(self, status: Status, reason: str | None, execution_id: int | None) -> JobOutcome:
        self.outcome = JobOutcome(
            job_type=self.job_type,
            status=status,
            reason=reason,
            execution_id=execution_id,
            duration_s=round(time.monotonic() - self.started, 3),
        )
        return self.outcome

    def _record(self, status: Literal[Status.SKIPPED, Status.FAILURE], reason: str) -> JobOutcome:
        assert self.engine is not None
        row = record_outcome(
            self.engine, self.job_type, status, reason, period=self.period, origin=self.origin
        )
        log = self.logger.info if status == Status.SKIPPED else self.logger.error
        log("%s: %s (execution %d)", status, reason, row)
        return self._end(status, reason, row)

    def begin(self, upstream_failed: str | None) -> JobOutcome | None:
        """Everything before the body; an outcome here means the body does not run."""
        try:
            settings = get_settings()
            self.period = self.period or logical_period(None, settings.timezone)
            self.engine = shared_engine(settings)
            if not job_enabled(self.job_type):
                flag = enabled_flag_name(self.job_type)
                return self._record(Status.SKIPPED, f"disabled via {flag}")
            if upstream_failed:
                return self._record(Status.SKIPPED, upstream_skip_reason(upstream_failed))
            checks: list[PreCheck] = []
            if self.spec.once_per_period:
                checks.append(already_succeeded_for_period)
            if self.spec.pre_check is not None:
                checks.append(self.spec.pre_check)
            result = acquire_job_lock(
                self.engine,
                self.job_type,
                policy=lock_policy(settings),
                period=self.period,
                pre_check=_all_pre_checks(checks),
                origin=self.origin,
                run_pre_check=not self.force,
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
            return self._end(Status.SKIPPED, result.reason, result.skipped_execution_id)
        self.lease = result.lease
        return None

    @contextmanager
    def running(self) -> Iterator[JobContext]:
        """The body's context: lease (heartbeat, final status) and session (commit/rollback).

        Exceptions become the outcome; only interruptions (SIGTERM, cancellation, KeyboardInterrupt)
        propagate, after the lease has recorded them as FAILURE "interrupted".
        """
        lease = self.lease
        assert lease is not None and self.engine is not None and self.period is not None
        execution_id = lease.execution.id
        try:
            with lease, Session(self.engine) as session:
                self.logger.info(
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
                # Fencing for the job's own data: do not commit work done under a lost lock.
                if not lease.still_held():
                    raise LockLostError(
                        f"lock lost: execution {execution_id} was reaped or released while "
                        "running; the job's changes were rolled back"
                    )
                # SUCCESS is written in the job's own transaction: data and status commit
                # together, so a release that lands after the last heartbeat still wins.
                if not lease.succeed_with(session.connection(), session.commit).recorded:
                    session.rollback()
        except LockLostError as err:
            self.logger.error("%s", err.message)
            self._end(Status.FAILURE, err.message, execution_id)
        except Exception as err:
            # The same bounded, printable, password-free text as the row (see clean_message).
            error = clean_message(describe_exception(err))
            self.logger.error("FAILURE: %s (execution %d)", error, execution_id, exc_info=True)
            self._end(Status.FAILURE, error, execution_id)
        else:
            self.logger.info("SUCCESS (execution %d)", execution_id)
            self._end(Status.SUCCESS, None, execution_id)

    def state(self) -> State[Any]:
        assert self.outcome is not None
        return state_for(self.outcome)


class BackgroundJob:
    """A job: its spec (type, dependencies, options), its body and the Prefect task that runs it.

    ``job.task`` takes ``period`` (default: today in SYNC_CRON_TIMEZONE), ``force`` (skip the
    pre-checks, never the lock) and ``upstream_failed`` (set by the flow: record a skip).
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
        self, *, period: date | None = None, force: bool = False, upstream_failed: str | None = None
    ) -> State[Any]:
        """Run the task to its final state from synchronous code (a sync flow, the CLI).

        A sync job runs in the calling thread, so a signal or cancellation reaches its body
        directly; an async job is submitted to the task runner, which gives it an event loop.
        """
        kwargs: dict[str, Any] = {
            "period": period,
            "force": force,
            "upstream_failed": upstream_failed,
        }
        if self.is_async:
            future = self.task.submit(**kwargs)
            future.wait()
            return cast(State[Any], future.state)
        return cast(State[Any], self.task(return_state=True, **kwargs))

    __call__ = run  # the spec's runner: calling a job runs it


def _sync_runner(spec: JobSpec, body: JobBody) -> Callable[..., Any]:
    def run(
        period: date | None = None, force: bool = False, upstream_failed: str | None = None
    ) -> State[Any]:
        attempt = _Attempt(spec, period, force)
        if attempt.begin(upstream_failed) is None:
            with attempt.running() as ctx:
                body(ctx)
        return attempt.state()

    return run


def _async_runner(spec: JobSpec, body: JobBody) -> Callable[..., Any]:
    async def run(
        period: date | None = None, force: bool = False, upstream_failed: str | None = None
    ) -> State[Any]:
        # The lock calls are short and synchronous; the heartbeat is a thread, so even a body
        # that blocks the event loop keeps beating.
        attempt = _Attempt(spec, period, force)
        if attempt.begin(upstream_failed) is None:
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
) -> Callable[[JobBody], BackgroundJob]:
    """Declare a job. ``job_type`` is a ``JobType`` member (or its string value).

    ``depends_on``: job types that must have run first in the nightly flow. ``once_per_period``:
    skip when a SUCCESS exists for this job and period. ``pre_check(ctx) -> reason | None`` runs
    inside the lock transaction. ``retries``: Prefect retries, each attempt gets its own row.
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
        )
        return BackgroundJob(fn, spec)

    return decorate
