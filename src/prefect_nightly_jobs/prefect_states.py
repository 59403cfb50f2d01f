"""The Prefect side of an outcome: states for job outcomes, and who is running (the Origin).

Prefect colours a run by its state *type* (the graph and every run list), so each kind of outcome
gets a type of its own, all of them final, and only a real failure one that Prefect retries:

- SUCCESS → Completed (green), its message naming the execution row;
- FAILURE → Failed (red) with the error as the message; the only one Prefect retries;
- SKIPPED as intended (disabled, already done for the period, running elsewhere, a pre-check's
  reason) → Cancelled named "Skipped" (grey): not run, on purpose, nothing to look at;
- SKIPPED because an upstream failed → Crashed named "UpstreamFailed" (orange): not run because
  something else broke — never green like work done, never red like the job's own failure.

The message is the row's reason. The nightly flow's own state does not follow from these: it is
Failed exactly when a job failed (``nightly_flow.final_state``).
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.results import ResultRecord  # type: ignore[attr-defined]
from prefect.states import Cancelled, Completed, Crashed, Failed

from prefect_nightly_jobs.lock import Origin
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import JobFailedError, JobOutcome

SKIPPED_STATE_NAME = "Skipped"
UPSTREAM_FAILED_STATE_NAME = "UpstreamFailed"


def state_for(outcome: JobOutcome) -> State[Any]:
    """The final Prefect state of a job task; its data is the outcome (in a JobFailedError when
    the job failed, as Prefect expects an exception behind a Failed state)."""
    if outcome.status == Status.SKIPPED:
        if outcome.skip_kind is not None and outcome.skip_kind.after_failure:
            return Crashed(name=UPSTREAM_FAILED_STATE_NAME, message=outcome.reason, data=outcome)
        return Cancelled(name=SKIPPED_STATE_NAME, message=outcome.reason, data=outcome)
    if outcome.status == Status.FAILURE:
        error = JobFailedError(outcome.reason or "failed", outcome=outcome)
        return Failed(message=outcome.reason, data=error)
    # Prefect logs this message in its "Finished in state" line: the job's success line.
    recorded = f"recorded as execution {outcome.execution_id}"
    return Completed(message=outcome.reason or recorded, data=outcome)


def outcome_from_state(job_type: str, state: State[Any]) -> JobOutcome:
    """Read a job task's outcome back from its final state.

    A task that never returned (crashed, cancelled, killed) has no outcome of ours: it is reported
    as FAILURE with Prefect's message; its row, if any, is finished by the lease or reaped.
    """
    value = _attached(state)
    if value is None:
        try:
            value = state.result(raise_on_failure=False, _sync=True)  # type: ignore[call-overload]
        except Exception:  # noqa: BLE001 - a result that cannot be read is reported, not raised
            value = None
    if isinstance(value, JobFailedError) and value.outcome is not None:
        return value.outcome
    if isinstance(value, JobOutcome):
        return value
    return JobOutcome(
        job_type=job_type,
        status=Status.FAILURE,
        reason=f"{state.name}: {state.message or 'no outcome recorded'}",
        execution_id=None,
        duration_s=0.0,
    )


def flow_state_for(outcome: JobOutcome) -> State[Any]:
    """The final state of a flow run of one job: Failed when it failed, Completed otherwise, the
    outcome described in the message."""
    if outcome.status == Status.FAILURE:
        error = JobFailedError(outcome.describe(), outcome=outcome)
        return Failed(message=outcome.describe(), data=error)
    return Completed(message=outcome.describe(), data=outcome)


def _attached(state: State[Any]) -> Any:
    """The outcome a job task returned in this process, read without ``State.result()``: that
    hops to Prefect's event-loop thread and back, which costs more than the rest of the read."""
    data = state.data
    if isinstance(data, ResultRecord):
        data = data.result
    return data if isinstance(data, JobOutcome | JobFailedError) else None


def current_origin() -> Origin:
    """The flow run, task run and attempt of the running task, for the execution row."""
    ctx = TaskRunContext.get()
    if ctx is None or ctx.task_run is None:
        return Origin()
    run = ctx.task_run
    return Origin(
        flow_run_id=str(run.flow_run_id) if run.flow_run_id else None,
        task_run_id=str(run.id),
        attempt=max(run.run_count, 1),
    )


def _no_empty_traceback(record: logging.LogRecord) -> bool:
    # Prefect logs a task that *returned* a Failed state with exc_info=True although no exception
    # is active, which prints a stray "NoneType: None". The job's own traceback is logged already.
    if record.exc_info == (None, None, None):
        record.exc_info = None
    return True


def quiet_stray_tracebacks() -> None:
    """Install the filter above on Prefect's task-run logger (idempotent)."""
    task_runs = logging.getLogger("prefect.task_runs")
    if _no_empty_traceback not in task_runs.filters:
        task_runs.addFilter(_no_empty_traceback)


def run_logger(fallback: str) -> logging.Logger | logging.LoggerAdapter[Any]:
    """Prefect's run logger (its lines reach the UI), or a plain logger outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)
