"""Helpers for tests of jobs on Prefect: run one job task inside a real flow (``rows`` reads its
execution rows: the plugin's own test helper)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from prefect_nightly_jobs.task import BackgroundJob
from prefect_nightly_jobs.testing import rows

PERIOD = date(2026, 11, 28)


@dataclass
class TaskRun:
    state: State[Any]
    flow_run_id: str

    @property
    def task_run_id(self) -> str:
        return str(self.state.state_details.task_run_id)


def run_task(job: BackgroundJob, **kwargs: Any) -> TaskRun:
    """Run ``job``'s Prefect task inside a throwaway flow; return its final state."""
    captured: dict[str, Any] = {}

    @flow(name="test-one-job", persist_result=False)
    def one_job() -> None:
        captured["state"] = job.run(**kwargs)
        captured["flow_run_id"] = flow_run.id

    kwargs.setdefault("period", PERIOD)
    one_job()
    return TaskRun(state=captured["state"], flow_run_id=str(captured["flow_run_id"]))


__all__ = ["PERIOD", "TaskRun", "rows", "run_task"]
