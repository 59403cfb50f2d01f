"""Scale-out dispatch (JOB_DISPATCH=deployments): each job of a nightly run as a flow run of its
own deployment on the work pool, started with Prefect's ``run_deployment``.

The nightly flow still decides the order (``dispatch.run_in_order``: dependencies first, at most
MAX_PARALLEL_JOBS at once); this module starts a job's flow run and says when and how it ended.

- ``nightly_job`` is the flow of every per-job deployment (``nightly-job/<job_type>``, declared in
  prefect.yaml by ``jobctl deployments``). It runs the job's task with the database lock, as the
  nightly flow does in-process, then publishes the outcome as a label of its own flow run: its
  result is not persisted, and its process may be on another machine.
- ``DeploymentLauncher`` creates those flow runs (subflows of the nightly run, with the job's job
  variables) and one thread polls them all. A job whose upstream failed, or that is disabled, is
  recorded by the nightly flow itself, as in-process: no flow run is started to skip it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import asdict
from datetime import date
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

from prefect_nightly_jobs import interrupts
from prefect_nightly_jobs.catalog import job as catalog_job
from prefect_nightly_jobs.dispatch import Launch
from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.job_deployments import (
    JOB_FLOW,
    deployment_name,
    merged_job_variables,
)
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import Blocker, JobOutcome, SkipKind
from prefect_nightly_jobs.prefect_states import flow_state_for, outcome_from_state
from prefect_nightly_jobs.registry import JobSpec

log = logging.getLogger("prefect_nightly_jobs.scaleout")

OUTCOME_LABEL = "prefect-nightly-jobs.outcome"
# How often the nightly flow asks the API about the job flow runs it waits for (one request for
# all of them): short next to a flow run's own start-up, a few seconds on a process worker.
POLL_S = 0.5


# -- the job's side: its own flow run ------------------------------------------------------


def outcome_label(outcome: JobOutcome) -> dict[str, str]:
    return {OUTCOME_LABEL: json.dumps(asdict(outcome), sort_keys=True)}


def outcome_from_labels(job_type: str, labels: dict[str, Any]) -> JobOutcome | None:
    """The outcome a job's flow run published, None if it published none (it never got there)."""
    raw = labels.get(OUTCOME_LABEL)
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
        outcome = JobOutcome(
            job_type=str(data["job_type"]),
            status=Status(data["status"]),
            reason=data["reason"],
            execution_id=data["execution_id"],
            duration_s=float(data["duration_s"]),
            skip_kind=SkipKind(data["skip_kind"]) if data["skip_kind"] else None,
        )
    except (ValueError, KeyError, TypeError):
        return None
    return outcome if outcome.job_type == job_type else None


def _publish(outcome: JobOutcome) -> None:
    run_id = flow_run.id
    if run_id is None:
        return  # called outside a flow run: nobody waits for the label
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(str(run_id)), outcome_label(outcome))  # type: ignore[arg-type]
    except Exception as err:  # noqa: BLE001 - the row is written; the nightly flow reports this
        log.error(
            "[%s] could not publish the outcome to the nightly flow: %s", outcome.job_type, err
        )


@flow(name=JOB_FLOW, persist_result=False, log_prints=False)
def nightly_job(
    job_type: str, period: date | None = None, force: bool = False, skip_done: bool = False
) -> State[Any]:
    """Run one job with its lock, as a flow run of its own (the scale-out nightly flow starts
    these); ``force`` skips its pre-checks, never the lock; ``skip_done`` skips it when it already
    succeeded for the period (a backfill)."""
    interrupts.install()
    job = catalog_job(job_type)
    state = job.run(period=period, force=force, skip_done=skip_done)
    outcome = outcome_from_state(job_type, state)
    _publish(outcome)
    return flow_state_for(outcome)


# -- the nightly flow's side -----------------------------------------------------------------


def _final_outcome(spec: JobSpec, run: FlowRun) -> JobOutcome:
    outcome = outcome_from_labels(spec.job_type, dict(run.labels or {}))
    if outcome is not None:
        return outcome
    # Crashed, cancelled, killed with its worker, or it could not reach the API at the end: no
    # outcome of ours. Its row, if it started, is ended by its lease or reaped.
    state = run.state
    name, message = (state.name, state.message) if state is not None else ("Unknown", None)
    return JobOutcome(
        job_type=spec.job_type,
        status=Status.FAILURE,
        reason=f"flow run {run.name} ended {name}: {message or 'no outcome reported'}",
        execution_id=None,
        duration_s=0.0,
    )


class DeploymentLauncher:
    """Starts each job as a flow run of its deployment; ``launch`` is a ``dispatch.Launch``.

    ``record`` runs a job in this process: it is only given the jobs that are to be recorded as
    skipped (blocked by an upstream, or disabled), whose body never runs.
    """

    def __init__(
        self,
        period: date,
        record: Launch,
        *,
        poll_s: float = POLL_S,
        parent_run_id: str | None = None,
        run_count: int = 1,
        skip_done: bool = False,
    ) -> None:
        self.period = period
        self.skip_done = skip_done
        self.record = record
        self.poll_s = poll_s
        self._key = f"{parent_run_id}/{run_count}" if parent_run_id else None
        # The nightly run's own overrides (`prefect deployment run --job-variable ...`) reach
        # its jobs' runs too, under each job's declared ones.
        context = FlowRunContext.get()
        parent = context.flow_run if context is not None else None
        self._inherited = dict(parent.job_variables or {}) if parent is not None else {}
        self._waiting: dict[UUID, tuple[JobSpec, Future[JobOutcome]]] = {}
        self._guard = threading.Lock()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None

    def check_deployments(self, specs: Iterable[JobSpec]) -> None:
        """Every job's deployment exists, or one ConfigurationError naming the missing ones and
        the fix, before any job starts."""
        missing: list[str] = []
        with get_client(sync_client=True) as client:
            for spec in specs:
                try:
                    client.read_deployment_by_name(deployment_name(spec.job_type))
                except ObjectNotFound:
                    missing.append(deployment_name(spec.job_type))
        if missing:
            raise ConfigurationError(
                f"JOB_DISPATCH=deployments needs a deployment per job; not found: "
                f"{', '.join(missing)} (run `jobctl deployments`, then `prefect deploy --all`)"
            )

    def launch(self, spec: JobSpec, blocked_by: Blocker | None) -> Future[JobOutcome]:
        if blocked_by is not None or not spec.enabled():
            return self.record(spec, blocked_by)
        run: FlowRun = run_deployment(  # type: ignore[assignment] # sync here
            deployment_name(spec.job_type),
            parameters={
                "job_type": spec.job_type,
                "period": self.period.isoformat(),
                **({"skip_done": True} if self.skip_done else {}),
            },
            flow_run_name=f"{spec.job_type}-{self.period.isoformat()}",
            timeout=0,  # started, not awaited: the poller waits for all of them at once
            as_subflow=True,  # shown under the nightly run; cancelling it cancels the job's run
            job_variables=merged_job_variables(self._inherited, spec.job_variables) or None,
            idempotency_key=(
                f"{self._key}/{self.period.isoformat()}/{spec.job_type}" if self._key else None
            ),
        )
        done: Future[JobOutcome] = Future()
        with self._guard:
            self._waiting[run.id] = (spec, done)
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="nightly-job-poller", daemon=True
                )
                self._poller.start()
        return done

    def _poll(self) -> None:
        with get_client(sync_client=True) as client:
            while not self._closed.wait(self.poll_s):
                with self._guard:
                    ids = list(self._waiting)
                if not ids:
                    continue
                try:
                    self._settle(client, ids)
                except Exception as err:  # noqa: BLE001 - the API may come back: keep waiting
                    log.warning("could not read the jobs' flow runs, retrying: %s", err)

    def _settle(self, client: SyncPrefectClient, ids: list[UUID]) -> None:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)
        )
        for run in runs:
            if run.state is None or not run.state.is_final():
                continue
            with self._guard:
                spec, done = self._waiting.pop(run.id)
            done.set_result(_final_outcome(spec, run))

    def close(self) -> None:
        """Stop polling; a job still waited for is reported as a FAILURE of this run."""
        self._closed.set()
        if self._poller is not None:
            self._poller.join(timeout=self.poll_s + 30)
        with self._guard:
            left, self._waiting = list(self._waiting.values()), {}
        for spec, done in left:
            if not done.done():
                done.set_result(JobOutcome(spec.job_type, Status.FAILURE, "not awaited", None, 0.0))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
