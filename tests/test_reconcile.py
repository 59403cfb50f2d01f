"""The reconcile sweep: a dead row is ended in the database and its Prefect runs are set Crashed,
with the same message; an unreachable API leaves the row flagged, and the next sweep tells it."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Running
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import Status, job_execution
from prefect_nightly_jobs.reconciliation import _one_reporter, reconcile, reconcile_now

pytestmark = pytest.mark.prefect

STALE_MS = 2000


@flow(name="dead-nightly")
def _a_flow() -> None: ...


@task(name="dead-job")
def _a_task() -> None: ...


def _runs(client: SyncPrefectClient, *, flow_state: Any = None) -> tuple[str, str]:
    """A flow run and a task run of it, both Running, as a process that died left them."""
    flow_run = client.create_flow_run(_a_flow, state=flow_state or Running())
    task_run = client.create_task_run(
        _a_task, flow_run_id=flow_run.id, dynamic_key=uuid.uuid4().hex, state=Running()
    )
    return str(flow_run.id), str(task_run.id)


def _dead_row(
    engine: Engine, job_type: str, flow_run_id: str | None, task_run_id: str | None
) -> int:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(job_execution)
                .values(
                    job_type=job_type,
                    status=Status.RUNNING.value,
                    started_at=an_hour_ago,
                    heartbeat_at=an_hour_ago,
                    flow_run_id=flow_run_id,
                    task_run_id=task_run_id,
                    owner="host:1",
                )
                .returning(job_execution.c.id)
            ).scalar_one()
        )


def _row(engine: Engine, execution_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(job_execution).where(job_execution.c.id == execution_id)).one()


def test_a_dead_row_is_ended_and_its_prefect_runs_set_crashed(
    prefect_harness: None, engine: Engine
) -> None:
    with get_client(sync_client=True) as client:
        flow_run_id, task_run_id = _runs(client)
        dead = _dead_row(engine, "import_events", flow_run_id, task_run_id)

        result = reconcile_now(engine, STALE_MS)

        row = _row(engine, dead)
        assert row.status == Status.FAILURE
        assert row.error_message.startswith("abandoned: no heartbeat since ")
        assert row.prefect_pending is False, "told Prefect, so no longer pending"
        assert [r.execution_id for r in result.reaped] == [dead]
        assert [r.execution_id for r in result.reported] == [dead]
        assert result.still_pending == 0
        expected = f"job import_events, execution {dead}: {row.error_message}"
        task_state = client.read_task_run(uuid.UUID(task_run_id)).state
        flow_state = client.read_flow_run(uuid.UUID(flow_run_id)).state
        assert task_state is not None and flow_state is not None
        assert (task_state.type, task_state.message) == (StateType.CRASHED, expected)
        assert (flow_state.type, flow_state.message) == (StateType.CRASHED, expected)


def test_a_flow_run_that_already_ended_keeps_its_state(
    prefect_harness: None, engine: Engine
) -> None:
    with get_client(sync_client=True) as client:
        flow_run_id, task_run_id = _runs(client)
        client.set_flow_run_state(uuid.UUID(flow_run_id), Completed(), force=True)
        _dead_row(engine, "daily_rollup", flow_run_id, task_run_id)
        reconcile_now(engine, STALE_MS)
        flow_state = client.read_flow_run(uuid.UUID(flow_run_id)).state
        task_state = client.read_task_run(uuid.UUID(task_run_id)).state
        assert flow_state is not None and flow_state.type == StateType.COMPLETED
        assert task_state is not None and task_state.type == StateType.CRASHED


def test_runs_unknown_to_prefect_and_rows_without_ids_are_reaped_and_told(
    prefect_harness: None, engine: Engine
) -> None:
    ghost = _dead_row(engine, "ghost", str(uuid.uuid4()), str(uuid.uuid4()))
    bare = _dead_row(engine, "bare", None, None)
    result = reconcile_now(engine, STALE_MS)
    assert {r.execution_id for r in result.reaped} == {ghost, bare}
    # Nothing to set Crashed for either; the "reaped" event is sent, and nothing is left.
    assert {r.execution_id for r in result.reported} == {ghost, bare}
    assert _row(engine, ghost).prefect_pending is False
    assert _row(engine, bare).prefect_pending is False
    assert _row(engine, bare).status == Status.FAILURE


def test_without_an_api_url_outside_a_flow_the_rows_wait(
    prefect_harness: None, engine: Engine
) -> None:
    dead = _dead_row(engine, "import_events", str(uuid.uuid4()), str(uuid.uuid4()))
    # A throwaway server would answer "not found" for runs it never saw: nothing is asked.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = reconcile_now(engine, STALE_MS)
    assert [r.execution_id for r in result.reaped] == [dead]
    assert (result.reported, result.still_pending) == ([], 1)
    assert result.api_error == "PREFECT_API_URL is not set"
    assert _row(engine, dead).prefect_pending is True


def test_one_sweep_tells_prefect_at_a_time(prefect_harness: None, engine: Engine) -> None:
    dead = _dead_row(engine, "import_events", str(uuid.uuid4()), str(uuid.uuid4()))
    with _one_reporter(engine) as first:
        assert first
        result = reconcile_now(engine, STALE_MS)  # another sweep, meanwhile
    assert [r.execution_id for r in result.reaped] == [dead]
    assert result.reported == [], "it must leave the rows to the sweep that is reporting"
    assert _row(engine, dead).prefect_pending is True
    assert [r.execution_id for r in reconcile_now(engine, STALE_MS).reported] == [dead]


def test_an_api_that_never_answers_costs_one_timeout_not_retries(
    prefect_harness: None, engine: Engine
) -> None:
    _dead_row(engine, "import_events", str(uuid.uuid4()), str(uuid.uuid4()))
    _dead_row(engine, "daily_rollup", str(uuid.uuid4()), str(uuid.uuid4()))
    accepted: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:  # accepts and never answers
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(listener.accept()[0])

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        hung = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        with temporary_settings({PREFECT_API_URL: hung}):
            result = reconcile_now(engine, STALE_MS)
        stop.set()
        acceptor.join()
    for conn in accepted:
        conn.close()
    assert result.still_pending == 2 and result.reported == []
    assert result.api_error is not None and "Timeout" in result.api_error
    assert len(accepted) == 1, "one request, no retries, and the second row was not tried"


def test_a_live_row_is_left_alone(prefect_harness: None, engine: Engine) -> None:
    with engine.begin() as conn:
        live = conn.execute(
            insert(job_execution)
            .values(
                job_type="live",
                status=Status.RUNNING.value,
                started_at=datetime.now(UTC),
                heartbeat_at=datetime.now(UTC),
                flow_run_id=str(uuid.uuid4()),
            )
            .returning(job_execution.c.id)
        ).scalar_one()
    result = reconcile_now(engine, 60_000)
    assert result.reaped == [] and result.reported == []
    assert (_row(engine, live).status, _row(engine, live).prefect_pending) == (
        Status.RUNNING,
        False,
    )


def test_an_unreachable_api_leaves_the_row_flagged_until_the_next_sweep(
    prefect_harness: None, engine: Engine
) -> None:
    with get_client(sync_client=True) as client:
        flow_run_id, task_run_id = _runs(client)
    dead = _dead_row(engine, "import_events", flow_run_id, task_run_id)
    reachable = PREFECT_API_URL.value()
    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/api"
    with temporary_settings({PREFECT_API_URL: nowhere}):
        down = reconcile_now(engine, STALE_MS)
    assert [r.execution_id for r in down.reaped] == [dead]
    assert down.reported == [] and down.still_pending == 1
    assert down.api_error is not None and "ConnectError" in down.api_error
    row = _row(engine, dead)
    assert (row.status, row.prefect_pending) == (Status.FAILURE, True)

    with temporary_settings({PREFECT_API_URL: str(reachable)}):
        again = reconcile_now(engine, STALE_MS)
    assert again.reaped == [], "already ended: only Prefect was left to tell"
    assert [r.execution_id for r in again.reported] == [dead]
    assert _row(engine, dead).prefect_pending is False
    with get_client(sync_client=True) as client:
        state = client.read_task_run(uuid.UUID(task_run_id)).state
    assert state is not None and state.type == StateType.CRASHED


def test_the_reconcile_flow_runs_the_sweep(job_env: URL, engine: Engine) -> None:
    dead = _dead_row(engine, "import_events", None, None)
    summary = reconcile()
    assert summary == "1 reaped, 1 reported to Prefect, 0 pending"
    assert _row(engine, dead).status == Status.FAILURE
