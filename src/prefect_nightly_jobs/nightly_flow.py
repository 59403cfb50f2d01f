"""The nightly flow: every job of the application once, in dependency order, in both systems.

``nightly`` is the flow an application deploys (its ``flows/nightly.py`` imports it; see
prefect.yaml); ``run_nightly``, ``run_backfill`` and ``run_job`` run a flow once in this process
for the CLI (ephemeral Prefect unless PREFECT_API_URL is set). The jobs come from ``catalog``.
"""

from __future__ import annotations

from concurrent.futures import Future
from datetime import date
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from prefect_nightly_jobs import interrupts
from prefect_nightly_jobs.catalog import job as catalog_job
from prefect_nightly_jobs.catalog import registry as catalog_registry
from prefect_nightly_jobs.dispatch import Launch, run_in_order
from prefect_nightly_jobs.engines import shared_engine
from prefect_nightly_jobs.errors import JobsError
from prefect_nightly_jobs.local_prefect import local_prefect, settle
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import (
    BackfillReport,
    Blocker,
    JobFailedError,
    JobOutcome,
    NightlyReport,
)
from prefect_nightly_jobs.prefect_states import flow_state_for, outcome_from_state
from prefect_nightly_jobs.reconciliation import log_reconciliation, reconcile_now
from prefect_nightly_jobs.registry import JobSpec, Registry
from prefect_nightly_jobs.report import ARTIFACT_KEY, markdown_table
from prefect_nightly_jobs.scaleout import DeploymentLauncher
from prefect_nightly_jobs.schedule import periods_to_run
from prefect_nightly_jobs.settings import (
    Dispatch,
    Settings,
    get_settings,
    validate_enabled_flags,
)
from prefect_nightly_jobs.task import BackgroundJob


def preflight(registry: Registry) -> tuple[Settings, list[JobSpec]]:
    """Everything that can be wrong before any job runs: settings, enable flags, the dependency
    graph, the database and its migrations. Raises one JobsError naming the problem."""
    settings = get_settings()
    ordered = list(registry.ordered())
    validate_enabled_flags(spec.job_type for spec in registry)
    shared_engine(settings)
    return settings, ordered


def _job(spec: JobSpec) -> BackgroundJob:
    if not isinstance(spec.runner, BackgroundJob):
        raise JobsError(
            f"job {spec.job_type!r} has no Prefect task: declare it with @background_job"
        )
    return spec.runner


def _inline(period: date, skip_done: bool) -> Launch:
    """Run each job from the flow's own thread, one after the other."""

    def launch(spec: JobSpec, blocked_by: Blocker | None) -> Future[JobOutcome]:
        state = _job(spec).run(period=period, blocked_by=blocked_by, skip_done=skip_done)
        done: Future[JobOutcome] = Future()
        done.set_result(outcome_from_state(spec.job_type, state))
        return done

    return launch


def _submitted(period: date, skip_done: bool) -> Launch:
    """Submit each job to the flow's thread-pool task runner (MAX_PARALLEL_JOBS > 1)."""

    def launch(spec: JobSpec, blocked_by: Blocker | None) -> Future[JobOutcome]:
        done: Future[JobOutcome] = Future()

        def finished(run: PrefectFuture[Any]) -> None:
            # wait() on a finished future stores its final state locally; reading .state before
            # that would ask the API, which may not have recorded the end yet.
            try:
                run.wait()
                done.set_result(outcome_from_state(spec.job_type, run.state))
            except BaseException as err:  # noqa: BLE001 - an unresolved future hangs the flow
                done.set_exception(err)

        future = _job(spec).task.submit(period=period, blocked_by=blocked_by, skip_done=skip_done)
        future.add_done_callback(finished)
        return done

    return launch


def run_jobs(
    ordered: list[JobSpec],
    period: date,
    *,
    max_parallel: int = 1,
    skip_done: bool = False,
    dispatch: Dispatch = Dispatch.IN_PROCESS,
) -> list[JobOutcome]:
    """Inside a flow: run the jobs in dependency order, at most ``max_parallel`` at once, as its
    tasks or (``Dispatch.DEPLOYMENTS``) each as a flow run of its own deployment; ``skip_done``
    skips each job that already succeeded for the period (a backfill)."""
    if dispatch == Dispatch.DEPLOYMENTS:
        launcher = DeploymentLauncher(
            period,
            _inline(period, skip_done),
            parent_run_id=flow_run.id,
            run_count=flow_run.run_count,
            skip_done=skip_done,
        )
        launcher.check_deployments(ordered)
        with launcher:
            return run_in_order(ordered, launcher.launch, max_parallel=max_parallel)
    launch = _inline(period, skip_done) if max_parallel == 1 else _submitted(period, skip_done)
    return run_in_order(ordered, launch, max_parallel=max_parallel)


def final_state(report: NightlyReport | BackfillReport) -> State[Any]:
    """Failed when any job failed (the message names them), Completed otherwise."""
    reports = report.reports if isinstance(report, BackfillReport) else [report]
    failed = [
        o.job_type if len(reports) == 1 else f"{o.job_type} ({r.period.isoformat()})"
        for r in reports
        for o in r.outcomes
        if o.status == Status.FAILURE
    ]
    if failed:
        message = f"{report.summary()}; failed: {', '.join(failed)}"
        error = (
            JobFailedError(message, backfill=report)
            if isinstance(report, BackfillReport)
            else JobFailedError(message, report=report)
        )
        return Failed(message=message, data=error)
    return Completed(message=report.summary(), data=report)


def _plain(day: date | None) -> date | None:
    # A plain date, whatever Prefect hands back for a date parameter.
    return None if day is None else date(day.year, day.month, day.day)


def run_registry(
    registry: Registry,
    period: date | None,
    period_from: date | None = None,
    period_to: date | None = None,
    dispatch: Dispatch | None = None,
) -> State[Any]:
    """The body of the nightly flow, for any registry (tests use their own); ``dispatch``
    defaults to JOB_DISPATCH.

    The run is for ``period`` if given; for every period from ``period_from`` to ``period_to``
    (a backfill: jobs already done for a period are skipped); else for the schedule interval
    that the flow run's scheduled start closes (see ``schedule``)."""
    interrupts.install()
    settings, ordered = preflight(registry)
    backfill = period_from is not None or period_to is not None
    periods = periods_to_run(
        settings,
        period=_plain(period),
        period_from=_plain(period_from),
        period_to=_plain(period_to),
        moment=flow_run.scheduled_start_time,
    )
    logger = get_run_logger()
    # Dead runs of any job type end now, not when that job type is next acquired: a disabled
    # job, or one whose upstream keeps failing, may never be. Their Prefect runs too.
    log_reconciliation(
        reconcile_now(shared_engine(settings), settings.stale_job_threshold_ms), logger
    )
    dispatch = dispatch or settings.job_dispatch
    reports: list[NightlyReport] = []
    for day in periods:
        logger.info(
            "period %s, %d jobs in order: %s (MAX_PARALLEL_JOBS=%d, JOB_DISPATCH=%s)",
            day.isoformat(),
            len(ordered),
            ", ".join(s.job_type for s in ordered),
            settings.max_parallel_jobs,
            dispatch,
        )
        outcomes = run_jobs(
            ordered,
            day,
            max_parallel=settings.max_parallel_jobs,
            skip_done=backfill,
            dispatch=dispatch,
        )
        report = NightlyReport(period=day, outcomes=outcomes, flow_run_id=flow_run.id)
        create_markdown_artifact(
            markdown_table(report), key=ARTIFACT_KEY, description=report.summary()
        )
        logger.info("%s", report.summary())
        reports.append(report)
    if not backfill:
        return final_state(reports[0])
    whole = BackfillReport(reports=reports, flow_run_id=flow_run.id)
    logger.info("%s", whole.summary())
    return final_state(whole)


@flow(name="nightly", persist_result=False, log_prints=False)
def nightly(
    period: date | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    dispatch: Dispatch | None = None,
) -> State[Any]:
    """Run every registered job once, in dependency order, for ``period`` (default: the schedule
    interval that this run closes: at 00:00 on D, D-1 for the daily cron), or for each period
    from ``period_from`` to ``period_to`` in order, skipping jobs already done for a period (a
    backfill). Failed when any job failed; a summary table per period is published as an
    artifact. ``dispatch`` (default: JOB_DISPATCH) ``deployments`` runs each job as a flow run
    of its own deployment."""
    return run_registry(catalog_registry(), period, period_from, period_to, dispatch)


@flow(name="run-job", flow_run_name="run-job-{job_type}", persist_result=False)
def run_one(job_type: str, period: date | None = None, force: bool = False) -> State[Any]:
    """Run one job now, with the lock; ``force`` skips its pre-checks, never the lock."""
    interrupts.install()
    job = catalog_job(job_type)
    state = job.run(period=period, force=force)
    return flow_state_for(outcome_from_state(job_type, state))


def _value(state: State[Any]) -> Any:
    """The report or outcome behind a flow's final state; other project errors are raised."""
    value = state.result(raise_on_failure=False, _sync=True)  # type: ignore[call-overload]
    if isinstance(value, JobFailedError):
        return value.report or value.backfill or value.outcome
    if isinstance(value, JobsError):
        raise value
    return value


def report_from_state(state: State[Any]) -> NightlyReport:
    """The report of a finished nightly flow run (Completed or Failed)."""
    report = _value(state)
    if not isinstance(report, NightlyReport):
        raise JobsError(f"the nightly flow ended {state.name} without a report: {state.message}")
    return report


def backfill_from_state(state: State[Any]) -> BackfillReport:
    """The report of a finished nightly flow run over a range of periods."""
    report = _value(state)
    if not isinstance(report, BackfillReport):
        raise JobsError(f"the backfill ended {state.name} without a report: {state.message}")
    return report


def run_nightly(period: date | None = None) -> NightlyReport:
    """Run the nightly flow once in this process and return its report."""
    preflight(catalog_registry())
    with local_prefect() as ephemeral:
        state = nightly(period=period, return_state=True)
        report = report_from_state(state)
        if ephemeral:
            settle(report.flow_run_id, len(report.outcomes))
    return report


def run_backfill(period_from: date, period_to: date) -> BackfillReport:
    """Run the nightly flow once in this process for every period from ``period_from`` to
    ``period_to``, in order, skipping jobs already done for a period; return the reports."""
    settings, _ordered = preflight(catalog_registry())
    periods_to_run(settings, period_from=period_from, period_to=period_to)  # before Prefect starts
    with local_prefect() as ephemeral:
        state = nightly(period_from=period_from, period_to=period_to, return_state=True)
        backfill = backfill_from_state(state)
        if ephemeral:
            settle(backfill.flow_run_id, len(backfill.outcomes))
    return backfill


def run_job(job_type: str, *, period: date | None = None, force: bool = False) -> JobOutcome:
    """Run one job through Prefect with the lock and return its outcome."""
    catalog_job(job_type)  # unknown names fail here, before Prefect starts
    preflight(catalog_registry())
    with local_prefect() as ephemeral:
        state = run_one(job_type=job_type, period=period, force=force, return_state=True)
        if ephemeral:
            settle(str(state.state_details.flow_run_id), 1)
    outcome = _value(state)
    if not isinstance(outcome, JobOutcome):
        raise JobsError(f"job {job_type} ended {state.name} without an outcome: {state.message}")
    return outcome
