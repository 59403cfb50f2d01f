"""Prefect events for every outcome, so that automations need no code.

Each event's resource is the job type (``prefect-nightly-jobs.job.<job_type>``); emitted inside a
run, Prefect relates it to the flow run, task run, deployment and work pool by itself. A reaped
execution is emitted by whoever reaped it and names the dead run's flow run and task run.

Event names: ``prefect-nightly-jobs.job.succeeded``, ``.failed``, ``.skipped``, ``.reaped`` and
``.lock-lost`` (a run that found its row ended by someone else; it is also ``.failed``).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from prefect.events import emit_event

from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import JobOutcome
from prefect_nightly_jobs.reaper import Reaped

PREFIX = "prefect-nightly-jobs.job"
log = logging.getLogger("prefect_nightly_jobs.events")


class JobEvent(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    REAPED = "reaped"
    LOCK_LOST = "lock-lost"

    @property
    def event(self) -> str:
        return f"{PREFIX}.{self.value}"


_BY_STATUS = {
    Status.SUCCESS: JobEvent.SUCCEEDED,
    Status.FAILURE: JobEvent.FAILED,
    Status.SKIPPED: JobEvent.SKIPPED,
}


def resource_id(job_type: str) -> str:
    return f"{PREFIX}.{job_type}"


def _resource(job_type: str) -> dict[str, str]:
    return {"prefect.resource.id": resource_id(job_type), "prefect.resource.name": job_type}


def _emit(kind: JobEvent, job_type: str, payload: dict[str, Any], **extra: Any) -> None:
    try:
        emit_event(event=kind.event, resource=_resource(job_type), payload=payload, **extra)
    except Exception as err:  # noqa: BLE001 - an event is a notification, never the outcome
        log.warning("[%s] could not emit %s: %s", job_type, kind.event, err)


def emit_outcome(outcome: JobOutcome, *, lock_lost: bool = False) -> None:
    """The outcome of one attempt (inside its task run)."""
    payload = {
        "status": outcome.status.value,
        "reason": outcome.reason,
        "skip_kind": outcome.skip_kind.value if outcome.skip_kind else None,
        "execution_id": outcome.execution_id,
        "duration_s": outcome.duration_s,
    }
    _emit(_BY_STATUS[outcome.status], outcome.job_type, payload)
    if lock_lost:
        _emit(JobEvent.LOCK_LOST, outcome.job_type, payload)


def emit_reaped(dead: Reaped) -> None:
    """A dead execution ended by a sweep or by an acquisition of its job type."""
    related = [
        {"prefect.resource.id": f"prefect.{kind}.{run_id}", "prefect.resource.role": "reaped"}
        for kind, run_id in (("flow-run", dead.flow_run_id), ("task-run", dead.task_run_id))
        if run_id
    ]
    payload = {"execution_id": dead.execution_id, "reason": dead.message}
    _emit(JobEvent.REAPED, dead.job_type, payload, related=related)
