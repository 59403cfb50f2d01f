"""Reading back what a run left in Prefect: flow run state, task run states, artifacts."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import State


def flow_run_state(flow_run_id: str) -> State:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return state


def task_states(flow_run_id: str) -> dict[str, State]:
    """The final state of each task run of a flow run, by task name (job type)."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
    found: dict[str, State] = {}
    for run in runs:
        assert run.state is not None
        name = run.name.rsplit("-", 1)[0]  # task run names are "<task name>-<suffix>"
        assert name not in found, f"two task runs for {name}"
        found[name] = run.state
    return found


def markdown_artifacts(flow_run_id: str) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    return {str(a.key): str(a.data) for a in artifacts if a.type == "markdown"}
