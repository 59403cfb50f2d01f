"""Scale-out dispatch against a real Prefect API (the test server): the job's flow run is created
from its deployment as a subflow of the nightly run, with the job's job variables, and its outcome
comes back from the label the job's flow run publishes. The worker side runs in tests/e2e."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.runtime import flow_run
from prefect.states import Completed, Crashed
from prefect.workers.process import ProcessWorker
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import Blocker, JobOutcome, SkipKind
from prefect_nightly_jobs.registry import JobSpec
from prefect_nightly_jobs.scaleout import (
    DeploymentLauncher,
    nightly_job,
    outcome_from_labels,
    outcome_label,
)
from tests.jobtools import PERIOD, rows

pytestmark = pytest.mark.prefect

WAIT_S = 60
OUTCOME = JobOutcome(
    "s_alpha", Status.SKIPPED, "already running: 7", 41, 0.25, SkipKind.ALREADY_RUNNING
)


def test_the_outcome_label_round_trips_and_refuses_what_is_not_one() -> None:
    labels = outcome_label(OUTCOME)
    assert outcome_from_labels("s_alpha", labels) == OUTCOME
    assert outcome_from_labels("s_beta", labels) is None, "another job's outcome is not this one's"
    assert outcome_from_labels("s_alpha", {}) is None
    assert outcome_from_labels("s_alpha", {next(iter(labels)): "{not json"}) is None


@pytest.fixture
def client(prefect_harness: None) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as sync_client:
        yield sync_client


@pytest.fixture
def job_types(client: SyncPrefectClient) -> list[str]:
    """Two jobs with a deployment each, on a process work pool (no worker: the test plays it)."""
    suffix = uuid.uuid4().hex[:8]
    pool = f"scaleout-{suffix}"
    client.create_work_pool(
        WorkPoolCreate(
            name=pool,
            type="process",
            base_job_template=ProcessWorker.get_default_base_job_template(),
        )
    )
    flow_id = client.create_flow_from_name("nightly-job")
    names = [f"s_alpha_{suffix}", f"s_beta_{suffix}"]
    for name in names:
        client.create_deployment(
            flow_id=flow_id,
            name=name,
            work_pool_name=pool,
            entrypoint="flows/nightly.py:nightly_job",
            parameters={"job_type": name},
        )
    return names


def _runs_of(client: SyncPrefectClient, job_type: str) -> list[FlowRun]:
    deployment = client.read_deployment_by_name(f"nightly-job/{job_type}")
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    )


def test_launch_starts_a_subflow_run_and_reads_how_it_ended(
    client: SyncPrefectClient, job_types: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = job_types
    recorded: list[tuple[str, Blocker | None]] = []

    def record(spec: JobSpec, blocked_by: Blocker | None) -> Future[JobOutcome]:
        recorded.append((spec.job_type, blocked_by))
        done: Future[JobOutcome] = Future()
        done.set_result(JobOutcome(spec.job_type, Status.SKIPPED, "recorded here", 1, 0.0))
        return done

    monkeypatch.setenv(f"{beta.upper()}_ENABLED", "false")
    alpha_spec = JobSpec(alpha, job_variables={"env": {"BATCH": "500"}})
    seen: dict[str, Any] = {}

    @flow(name="test-scaleout-parent", persist_result=False)
    def parent() -> None:
        with DeploymentLauncher(PERIOD, record, poll_s=0.1, parent_run_id=flow_run.id) as launcher:
            launcher.check_deployments([alpha_spec, JobSpec(beta)])
            with pytest.raises(ConfigurationError, match="not found: nightly-job/s_missing"):
                launcher.check_deployments([alpha_spec, JobSpec("s_missing")])
            started = launcher.launch(alpha_spec, None)
            (run,) = _runs_of(client, alpha)
            mine = JobOutcome(alpha, Status.SUCCESS, None, 12, 0.5)
            client.update_flow_run_labels(run.id, outcome_label(mine))  # type: ignore[arg-type]
            client.set_flow_run_state(run.id, Completed(), force=True)
            seen["alpha"] = (run, started.result(timeout=WAIT_S), mine)
            # Disabled (in this process's environment) or blocked: recorded here, no flow run.
            seen["beta"] = launcher.launch(JobSpec(beta), None).result(timeout=WAIT_S)
            blocker = Blocker(alpha, SkipKind.UPSTREAM_FAILED)
            launcher.launch(alpha_spec, blocker).result(timeout=WAIT_S)
            seen["parent_id"] = flow_run.id

    parent()
    run, outcome, published = seen["alpha"]
    assert outcome == published, "the outcome is the one the job's flow run published"
    assert run.parameters == {"job_type": alpha, "period": PERIOD.isoformat()}
    assert run.name == f"{alpha}-{PERIOD.isoformat()}"
    assert run.job_variables == {"env": {"BATCH": "500"}}
    assert run.parent_task_run_id is not None, "a subflow of the nightly run"
    parent_task = client.read_task_run(run.parent_task_run_id)
    assert str(parent_task.flow_run_id) == seen["parent_id"]
    assert recorded == [(beta, None), (alpha, Blocker(alpha, SkipKind.UPSTREAM_FAILED))]
    assert _runs_of(client, beta) == [] and len(_runs_of(client, alpha)) == 1


def test_a_job_run_that_ends_without_an_outcome_is_its_failure(
    client: SyncPrefectClient, job_types: list[str]
) -> None:
    alpha = job_types[0]

    @flow(name="test-scaleout-crash", persist_result=False)
    def parent() -> JobOutcome:
        with DeploymentLauncher(PERIOD, _never, poll_s=0.1) as launcher:
            started = launcher.launch(JobSpec(alpha), None)
            (run,) = _runs_of(client, alpha)
            client.set_flow_run_state(run.id, Crashed(message="worker lost"), force=True)
            return started.result(timeout=WAIT_S)

    outcome = parent()
    assert outcome.status == Status.FAILURE and outcome.execution_id is None
    assert outcome.reason == f"flow run {alpha}-{PERIOD.isoformat()} ended Crashed: worker lost"


def _never(spec: JobSpec, blocked_by: Blocker | None) -> Future[JobOutcome]:
    raise AssertionError(f"{spec.job_type} was to be started as a flow run, not recorded here")


def test_the_job_flow_publishes_the_outcome_its_row_records(
    job_env: URL, engine: Engine, client: SyncPrefectClient
) -> None:
    state = nightly_job(job_type="purge_expired", period=PERIOD, return_state=True)
    assert state.is_completed() and state.message == "SUCCESS"
    (row,) = rows(engine, "purge_expired")
    assert row.status == Status.SUCCESS
    run = client.read_flow_run(UUID(str(state.state_details.flow_run_id)))
    published = outcome_from_labels("purge_expired", dict(run.labels))
    assert published is not None
    assert (published.status, published.execution_id) == (Status.SUCCESS, row.id)
    assert row.flow_run_id == str(run.id), "the row names the job's own flow run"
