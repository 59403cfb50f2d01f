"""End to end, scale-out: the nightly deployment with dispatch=deployments on two process workers
runs each job as a flow run of its own deployment (nightly-job/<job_type>), once, in dependency
order, locked and recorded as in-process, and reports and publishes the same table."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import Status, job_execution
from prefect_nightly_jobs.outcome import JobOutcome, NightlyReport
from prefect_nightly_jobs.report import ARTIFACT_KEY, markdown_table
from tests.e2e.conftest import RECONCILE, PrefectServer, run_deployment
from tests.e2e.procs import Managed

pytestmark = pytest.mark.e2e

PERIOD = date(2026, 11, 27)
JOBS = ["import_events", "daily_rollup", "purge_expired"]


@pytest.fixture
def app_db(nightly_pg_template: str) -> Iterator[URL]:
    url = testing.create_pg_database(template=nightly_pg_template)
    yield url
    testing.drop_pg_database(url)


def _get(server: PrefectServer, path: str) -> dict[str, object]:
    return dict(server.api("GET", path).json())


def _artifact(server: PrefectServer, flow_run_id: str) -> str:
    response = server.api(
        "POST",
        "/artifacts/filter",
        json={
            "artifacts": {
                "key": {"any_": [ARTIFACT_KEY]},
                "flow_run_id": {"any_": [flow_run_id]},
            }
        },
    )
    (artifact,) = response.json()
    return str(artifact["data"])


def _any_duration(table: str) -> str:
    return re.sub(r"\| \d+\.\d\ds \|", "| Ns |", table)


def test_each_job_runs_once_as_its_own_flow_run_in_order(
    prefect_server: PrefectServer, start_worker: Callable[..., Managed], app_db: URL
) -> None:
    env = {"DATABASE_URL": app_db.render_as_string(hide_password=False), "MAX_PARALLEL_JOBS": "2"}
    # Reconcile runs would take the workers' slots (seen once in CI): make sure they are off.
    prefect_server.set_paused(RECONCILE, True)
    workers = [start_worker(env=env, name=f"scale-{i}", limit=2) for i in (1, 2)]

    done = run_deployment(
        prefect_server, params={"period": PERIOD.isoformat(), "dispatch": "deployments"}
    )
    logs = "\n".join(w.tail() for w in workers)
    assert done.state_type == "COMPLETED", f"{done.output[-2000:]}\n{logs}"
    assert done.message == f"3 jobs for {PERIOD.isoformat()}: 3 SUCCESS"

    engine = make_engine(app_db)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(select(job_execution).order_by(job_execution.c.id)))
    finally:
        engine.dispose()
    assert sorted(r.job_type for r in rows) == sorted(JOBS), "every job ran once"
    by_job = {r.job_type: r for r in rows}
    assert all(r.status == Status.SUCCESS and r.period == PERIOD for r in rows)
    assert by_job["daily_rollup"].started_at >= by_job["import_events"].completed_at

    nightly_tasks = {t["id"] for t in prefect_server.task_runs(done.flow_run_id)}
    job_runs = {r.flow_run_id for r in rows}
    assert len(job_runs) == 3 and done.flow_run_id not in job_runs, "each job in its own run"
    for row in rows:
        run = prefect_server.flow_run(row.flow_run_id)
        deployment = _get(prefect_server, f"/deployments/{run['deployment_id']}")
        assert deployment["name"] == row.job_type, "run from the job's own deployment"
        assert run["state"]["type"] == "COMPLETED"
        assert run["parent_task_run_id"] in nightly_tasks, "a subflow of the nightly run"

    # The report the nightly flow published is the in-process one for the same outcomes.
    expected = NightlyReport(
        period=PERIOD,
        outcomes=[JobOutcome(job, Status.SUCCESS, None, by_job[job].id, 0.0) for job in JOBS],
    )
    published = _artifact(prefect_server, done.flow_run_id)
    assert _any_duration(published) == _any_duration(markdown_table(expected))
