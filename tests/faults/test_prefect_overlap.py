"""A nightly run that overlaps another run of the same period (a manual `jobctl nightly` while the
deployment runs, or a second deployment without the concurrency limit): the jobs that are already
running elsewhere are skipped, and so are the jobs that depend on them. A dependent must not run on
a half-imported period; it runs, once, in the run that holds its upstream."""

from __future__ import annotations

from datetime import date

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.lock import LockAcquired, acquire_job_lock
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.nightly_flow import run_nightly
from tests.prefect_api import task_states

pytestmark = [pytest.mark.faults, pytest.mark.prefect]

PERIOD = date(2026, 11, 26)


def test_jobs_downstream_of_a_job_running_elsewhere_are_skipped(
    job_env: URL, engine: Engine
) -> None:
    # The other run is in the middle of import_events (job_env's threshold is 2 s).
    other = acquire_job_lock(engine, "import_events", policy=LockPolicy(2000, 200), period=PERIOD)
    assert isinstance(other, LockAcquired)
    with other.lease:
        report = run_nightly(PERIOD)
    outcomes = {o.job_type: o for o in report.outcomes}

    imported = outcomes["import_events"]
    assert imported.status == Status.SKIPPED
    assert imported.reason is not None
    assert imported.reason.startswith(f"already running: execution {other.execution.id} ")
    rollup = outcomes["daily_rollup"]
    assert rollup.status == Status.SKIPPED, f"daily_rollup ran on a half-imported period: {rollup}"
    assert rollup.reason == "upstream import_events is still running in another run"
    assert outcomes["purge_expired"].status == Status.SUCCESS  # independent of the import
    assert not report.failed
    assert report.flow_run_id is not None
    states = task_states(report.flow_run_id)
    # Skipped as intended (the other run runs it): grey, not the orange of an upstream failure.
    assert (states["daily_rollup"].type, states["daily_rollup"].name) == (
        StateType.CANCELLED,
        "Skipped",
    )
    assert states["daily_rollup"].message == rollup.reason
