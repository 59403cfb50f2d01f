"""Dependency order through real Prefect flows: chain, diamond, parallel branches, failures."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
from prefect import flow
from prefect.client.schemas.objects import State, StateType
from sqlalchemy.engine import URL

from prefect_nightly_jobs.errors import DependencyError
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.nightly_flow import report_from_state, run_registry
from prefect_nightly_jobs.outcome import JobFailedError, NightlyReport
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.task import BackgroundJob, JobContext, background_job
from tests.prefect_api import task_states

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

PERIOD = date(2026, 11, 28)
events: list[tuple[str, str]] = []
events_lock = threading.Lock()
branches_meet = threading.Barrier(2, timeout=20)


def record(ctx: JobContext, what: str) -> None:
    with events_lock:
        events.append((what, ctx.job_type))


def make(name: str, *ups: str, fail: bool = False, meet: bool = False) -> BackgroundJob:
    def body(ctx: JobContext) -> None:
        record(ctx, "start")
        if meet:
            branches_meet.wait()  # passes only when both branches run at the same time
        record(ctx, "end")
        if fail:
            raise RuntimeError(f"{name} broke")

    return background_job(name, depends_on=ups)(body)


def run(jobs: list[BackgroundJob]) -> tuple[State[Any], NightlyReport]:
    events.clear()
    registry = Registry(job.spec for job in jobs)

    @flow(name="test-nightly", persist_result=False)
    def test_nightly() -> State[Any]:
        return run_registry(registry, PERIOD)

    state = test_nightly(return_state=True)
    return state, report_from_state(state)


def starts() -> list[str]:
    return [name for what, name in events if what == "start"]


def test_chain_runs_in_order(job_env: URL) -> None:
    state, report = run([make("o_third", "o_second"), make("o_first"), make("o_second", "o_first")])
    assert state.type == StateType.COMPLETED
    assert starts() == ["o_first", "o_second", "o_third"]
    assert [o.job_type for o in report.outcomes] == ["o_first", "o_second", "o_third"]


def test_diamond_sequential_follows_registration_ties(job_env: URL) -> None:
    jobs = [
        make("o_a"),
        make("o_c", "o_a"),
        make("o_b", "o_a"),
        make("o_d", "o_b", "o_c"),
    ]
    state, _ = run(jobs)
    assert state.type == StateType.COMPLETED
    assert starts() == ["o_a", "o_c", "o_b", "o_d"]
    assert events == [(w, n) for n in starts() for w in ("start", "end")], "one at a time"


def test_parallel_branches_overlap_and_respect_order(
    job_env: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_nightly_jobs.settings import get_settings

    monkeypatch.setenv("MAX_PARALLEL_JOBS", "2")
    get_settings.cache_clear()
    branches_meet.reset()
    jobs = [
        make("p_a"),
        make("p_b", "p_a", meet=True),
        make("p_c", "p_a", meet=True),
        make("p_d", "p_b", "p_c"),
    ]
    state, report = run(jobs)
    assert state.type == StateType.COMPLETED, state.message
    assert [o.status for o in report.outcomes] == [Status.SUCCESS] * 4
    assert events[0] == ("start", "p_a") and events[1] == ("end", "p_a")
    assert {events[2], events[3]} == {("start", "p_b"), ("start", "p_c")}, "branches overlap"
    assert events[-2:] == [("start", "p_d"), ("end", "p_d")]


def test_failed_branch_skips_downstream_other_branch_runs(job_env: URL) -> None:
    jobs = [
        make("f_a"),
        make("f_b", "f_a", fail=True),
        make("f_c", "f_a"),
        make("f_d", "f_b", "f_c"),
        make("f_e", "f_d"),
    ]
    state, report = run(jobs)
    assert state.type == StateType.FAILED
    assert state.message is not None and state.message.endswith("failed: f_b")
    outcomes = {o.job_type: (o.status, o.reason) for o in report.outcomes}
    assert outcomes == {
        "f_a": (Status.SUCCESS, None),
        "f_b": (Status.FAILURE, "RuntimeError: f_b broke"),
        "f_c": (Status.SUCCESS, None),
        "f_d": (Status.SKIPPED, "upstream f_b failed"),
        "f_e": (Status.SKIPPED, "upstream f_b failed"),
    }
    assert "f_d" not in starts() and "f_e" not in starts()
    assert report.flow_run_id is not None
    prefect_side = task_states(report.flow_run_id)
    for name in ("f_d", "f_e"):
        assert (prefect_side[name].type, prefect_side[name].name, prefect_side[name].message) == (
            StateType.CRASHED,
            "UpstreamFailed",
            "upstream f_b failed",
        ), "never left Pending/NotReady"


def test_cycle_fails_before_any_job_runs(job_env: URL) -> None:
    jobs = [make("c_a", "c_b"), make("c_b", "c_a"), make("c_free")]
    registry = Registry(job.spec for job in jobs)
    events.clear()

    @flow(name="test-nightly", persist_result=False)
    def test_nightly() -> State[Any]:
        return run_registry(registry, PERIOD)

    state = test_nightly(return_state=True)
    assert state.type == StateType.FAILED
    assert state.message is not None and "dependency cycle: " in state.message
    with pytest.raises(DependencyError, match=r"c_a -> c_b -> c_a|c_b -> c_a -> c_b"):
        state.result()
    assert events == [], "c_free did not run either"


def test_failed_nightly_raises_with_its_report_like_a_deployment_run(job_env: URL) -> None:
    registry = Registry([make("x_fail", fail=True).spec])

    @flow(name="test-nightly", persist_result=False)
    def test_nightly() -> State[Any]:
        return run_registry(registry, PERIOD)

    # A worker runs the flow for its result: the Failed state's data is raised, so it must be an
    # exception that explains itself (not "cannot be resolved into an exception").
    with pytest.raises(JobFailedError, match="failed: x_fail") as err:
        test_nightly()
    assert err.value.report is not None
    assert err.value.report.outcomes[0].reason == "RuntimeError: x_fail broke"
