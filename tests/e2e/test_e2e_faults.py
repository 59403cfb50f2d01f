"""Faults under a real deployment (issue 6): a flow-run process killed or terminated mid-job, a run
released by an operator while alive, two workers and two overlapping runs of the nightly flow.

Here (not in tests/faults) because the Prefect server, the deployment and the workers are the
session fixtures of tests/e2e. The app database is PostgreSQL. To hold a job "mid-job" for as long
as a test needs, the test takes ``LOCK TABLE imported_event`` in a transaction of its own: the
``import_events`` body then waits on its INSERT, heartbeat beating, until the test lets it go.
Statement triggers count the bodies that really ran (and committed) in ``body_runs``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from prefect_nightly_jobs.models import Status
from tests import REPO_ROOT
from tests.cli.conftest import run_jobctl, subprocess_env
from tests.e2e.conftest import PrefectServer, trigger_deployment, wait_for_flow_run
from tests.e2e.held import (
    JOBS,
    PERIOD,
    TableHold,
    bodies,
    flow_run_process,
    poll,
    rows,
    running_import,
    stale_by_db_clock,
    task_states,
)
from tests.e2e.procs import Managed

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def test_sigkill_of_the_flow_run_process_is_reaped_and_the_job_runs_once(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    held = hold()
    first = trigger_deployment(prefect_server, params={"period": PERIOD})
    killed = poll(lambda: running_import(app, first), 150, "import_events to be mid-job")
    pid = flow_run_process(worker, first)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    held.release()
    crashed = wait_for_flow_run(prefect_server, first)
    assert crashed.state_type in {"CRASHED", "FAILED"}, (crashed, worker.tail())
    assert rows(app, "import_events")[0].status == Status.RUNNING  # nobody could end it

    poll(lambda: stale_by_db_clock(app, killed.id), 30, "the dead run to go stale")
    second = trigger_deployment(prefect_server, params={"period": PERIOD})
    rerun = wait_for_flow_run(prefect_server, second)
    assert rerun.state_type == "COMPLETED", worker.tail()

    reaped, again = rows(app, "import_events")
    assert reaped.id == killed.id and reaped.flow_run_id == first
    assert reaped.status == Status.FAILURE
    assert reaped.error_message.startswith("abandoned: no heartbeat since ")
    assert (again.flow_run_id, again.status) == (second, Status.SUCCESS)
    assert bodies(app) == dict.fromkeys(JOBS, 1)
    assert not [r for r in rows(app) if r.status == Status.RUNNING]


def test_sigterm_of_the_flow_run_process_ends_row_and_runs_promptly(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = poll(lambda: running_import(app, run_id), 150, "import_events to be mid-job")
    os.kill(flow_run_process(worker, run_id), signal.SIGTERM)
    # The handler ends the row at once, while the table is still held: not the stale reaper.
    ended = poll(
        lambda: [r for r in rows(app, "import_events") if r.status != Status.RUNNING],
        15,
        "the row to be ended",
    )
    assert (ended[0].id, ended[0].status) == (row.id, Status.FAILURE)
    assert ended[0].error_message == "interrupted (SIGTERM)"
    final = wait_for_flow_run(prefect_server, run_id, timeout_s=60)
    assert final.state_type in {"CRASHED", "FAILED", "CANCELLED"}, (final, worker.tail())
    states = task_states(prefect_server, run_id)
    assert states["import_events"]["type"] != "RUNNING", states
    assert bodies(app) == {}


def test_run_released_by_jobctl_unlock_while_alive_ends_failed_with_lock_lost(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    held = hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = poll(lambda: running_import(app, run_id), 150, "import_events to be mid-job")
    unlocked = run_jobctl(
        "unlock",
        "import_events",
        "--reason",
        "looked stuck",
        cwd=REPO_ROOT,  # the project: with DATABASE_URL set, unlock writes no file
        env=subprocess_env(DATABASE_URL=worker_env["DATABASE_URL"]),
    )
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.startswith(f"released execution {row.id} of import_events")
    poll(lambda: "lock lost" in worker.tail(200), 30, "the heartbeat to notice the release")
    held.release()
    final = wait_for_flow_run(prefect_server, run_id, timeout_s=60)
    assert final.state_type == "FAILED", worker.tail()
    states = task_states(prefect_server, run_id)
    assert states["import_events"]["type"] == "FAILED"
    assert states["import_events"]["message"].startswith(
        f"lock lost: execution {row.id} is already FAILURE: released by operator: looked stuck"
    )
    assert (states["daily_rollup"]["type"], states["daily_rollup"]["name"]) == (
        "CRASHED",
        "UpstreamFailed",
    )
    (released,) = rows(app, "import_events")
    assert released.error_message == "released by operator: looked stuck"
    assert "import_events" not in bodies(app), "the released run's import was committed"


def test_two_workers_two_overlapping_runs_each_body_once(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    workers = [start_worker(env=worker_env, name=f"twin-{i}") for i in (1, 2)]
    held = hold()
    ids: list[str] = []

    def trigger() -> None:
        ids.append(trigger_deployment(prefect_server, params={"period": PERIOD}))

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert len(ids) == 2
    winner = poll(
        lambda: next((i for i in ids if running_import(app, i)), None), 150, "one run mid-job"
    )
    (loser,) = [i for i in ids if i != winner]
    lost = wait_for_flow_run(prefect_server, loser, timeout_s=90)
    held.release()
    won = wait_for_flow_run(prefect_server, winner, timeout_s=90)
    tails = "\n".join(w.tail() for w in workers)
    assert won.state_type == "COMPLETED", tails
    assert lost.state_type == "CANCELLED", (lost, tails)
    assert lost.message, "the cancelled run must say why"
    assert bodies(app) == dict.fromkeys(JOBS, 1)
    assert {r.flow_run_id for r in rows(app)} == {winner}
