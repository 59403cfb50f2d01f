"""Prefect and the database tell the same story after a crash or a cancellation (issue 11), with
a real server, process workers, the reconcile deployment on its schedule and PostgreSQL.

The job is held mid-body as in test_e2e_faults (``LOCK TABLE imported_event``). Nothing but the
reconcile deployment's schedule runs after the crash: no second nightly run, no operator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from prefect_nightly_jobs.models import Status
from tests.e2e.conftest import (
    RECONCILE,
    RECONCILE_S,
    PrefectServer,
    trigger_deployment,
    wait_for_flow_run,
)
from tests.e2e.held import (
    PERIOD,
    STALE_MS,
    TableHold,
    bodies,
    flow_run_process,
    poll,
    rows,
    running_import,
)
from tests.e2e.procs import Managed, descendants

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# The promise: RUNNING / Running for at most the threshold plus one sweep interval...
BOUND_S = STALE_MS / 1000 + RECONCILE_S
# ...plus what a worker needs to start the sweep's flow-run process (Python, Prefect, the
# project) on a busy two-core machine. Measured values are printed.
START_UP_S = 60


@pytest.fixture
def reconcile_schedule(
    prefect_server: PrefectServer, deployment: str
) -> Iterator[Callable[[], None]]:
    """``resume()`` turns the reconcile schedule on; it is paused again after the test. Resumed
    only after the crash: its runs would otherwise compete with the nightly run for the worker."""
    yield lambda: prefect_server.set_paused(RECONCILE, False)
    prefect_server.set_paused(RECONCILE, True)


def _mid_job(server: PrefectServer, app: Engine, run_id: str) -> Any:
    try:
        return poll(lambda: running_import(app, run_id), 150, "import_events to be mid-job")
    except AssertionError as err:
        workers = "\n".join(w.tail(40) for w in server.workers)
        raise AssertionError(f"{err}\n{server.flow_run(run_id)['state']}\n{workers}") from None


def _task_state(server: PrefectServer, flow_run_id: str, task_run_id: str) -> dict[str, Any]:
    (found,) = [t for t in server.task_runs(flow_run_id) if t["id"] == task_run_id]
    return dict(found["state"])


def _crashed_everywhere(
    server: PrefectServer, app: Engine, execution_id: int, flow_run_id: str
) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    (row,) = [r for r in rows(app) if r.id == execution_id]
    if row.status == Status.RUNNING:
        return None
    task = _task_state(server, flow_run_id, row.task_run_id)
    flow = server.flow_run(flow_run_id)["state"]
    if task["type"] != "CRASHED" or flow["type"] != "CRASHED":
        return None
    if row.error_message not in (flow.get("message") or ""):
        return None  # Crashed by the worker, not yet told why
    return row, task, flow


def _assert_reconciled(
    server: PrefectServer, app: Engine, row: Any, run_id: str, killed_at: float
) -> None:
    try:
        done = poll(
            lambda: _crashed_everywhere(server, app, row.id, run_id),
            BOUND_S + START_UP_S,
            "the row FAILURE and its task and flow runs Crashed",
        )
    except AssertionError as err:
        (now,) = [r for r in rows(app) if r.id == row.id]
        task = _task_state(server, run_id, row.task_run_id)
        flow = server.flow_run(run_id)["state"]
        workers = "\n".join(w.tail(80) for w in server.workers)
        raise AssertionError(f"{err}\nrow: {now}\ntask: {task}\nflow: {flow}\n{workers}") from None
    print(f"reconciled {time.monotonic() - killed_at:.1f}s after the kill (bound {BOUND_S}s)")
    ended, task, flow = done
    assert ended.status == Status.FAILURE
    assert ended.error_message.startswith("abandoned: no heartbeat since ")
    assert task["message"] == f"job import_events, execution {row.id}: {ended.error_message}"
    assert ended.error_message in flow["message"]
    # Nothing else ran: no second nightly run took the job, no later job started.
    assert [(r.id, r.flow_run_id) for r in rows(app)] == [(row.id, run_id)]
    assert bodies(app) == {}


def test_cancelling_a_running_flow_run_ends_the_job_cancelled_and_starts_no_other(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    held = hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = _mid_job(prefect_server, app, run_id)
    process = flow_run_process(worker, run_id)
    prefect_server.api(
        "POST",
        f"/flow_runs/{run_id}/set_state",
        json={"state": {"type": "CANCELLING", "message": "stopped by the test"}, "force": True},
    )
    ended = poll(
        lambda: [r for r in rows(app, "import_events") if r.status != Status.RUNNING],
        60,
        "the row to be ended",
    )
    held.release()  # the body's INSERT was waiting on it: rolled back, it never lands
    final = wait_for_flow_run(prefect_server, run_id, timeout_s=90)
    assert (ended[0].id, ended[0].status) == (row.id, Status.FAILURE)
    message = ended[0].error_message
    assert message.startswith("cancelled (flow run "), message
    assert message.endswith("is Cancelling in Prefect: stopped by the test)"), message
    # Prefect's engine forces Crashed as the process dies: the final word must still be ours.
    poll(lambda: process not in descendants(worker.pid), 60, "the flow-run process to exit")
    settled = poll(
        lambda: prefect_server.flow_run(run_id)["state"]["type"] == "CANCELLED",
        30,
        "the flow run to read Cancelled once its process is gone",
    )
    time.sleep(2)
    assert settled and prefect_server.flow_run(run_id)["state"]["type"] == "CANCELLED"
    assert final.state_type in {"CANCELLED", "CRASHED"}, (final, worker.tail())
    assert [r.job_type for r in rows(app)] == ["import_events"], "a later job started"
    assert bodies(app) == {}
    with app.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM imported_event").scalar_one() == 0


def test_sigkilled_flow_run_is_ended_in_both_systems_without_another_run(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
    *,
    reconcile_schedule: Callable[[], None],
) -> None:
    worker = start_worker(env=worker_env, limit=3)
    held = hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = _mid_job(prefect_server, app, run_id)
    os.kill(flow_run_process(worker, run_id), signal.SIGKILL)
    killed_at = time.monotonic()
    held.release()
    reconcile_schedule()
    _assert_reconciled(prefect_server, app, row, run_id, killed_at)


def test_sigkilled_worker_and_flow_run_are_ended_in_both_systems(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
    *,
    reconcile_schedule: Callable[[], None],
) -> None:
    doomed = start_worker(env=worker_env, name="doomed", limit=3)
    held = hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = _mid_job(prefect_server, app, run_id)
    flow_run_process(doomed, run_id)  # it exists, below the worker
    for pid in [doomed.pid, *descendants(doomed.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    held.release()
    # Nobody is left to tell Prefect: the flow run still says Running.
    assert prefect_server.flow_run(run_id)["state"]["type"] == "RUNNING"
    reconcile_schedule()
    start_worker(env=worker_env, name="restarted", limit=3)  # as systemd would restart it
    _assert_reconciled(prefect_server, app, row, run_id, killed_at)
