"""The cancellation watcher: once the cancelled flow-run process is gone, the run reads Cancelled
with the rows' message, over the Crashed that Prefect's engine forces as the process dies; a run
that ended otherwise keeps its state. (The e2e cancellation test shows it with a real worker; this
one does not depend on who wins the race.)"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, Crashed

from prefect_nightly_jobs.cancellation import _after_exit

pytestmark = pytest.mark.prefect

WHY = "cancelled (flow run test-run is Cancelling in Prefect: stopped by the test)"


@flow(name="cancelled-nightly")
def _a_flow() -> None: ...


def _exiting_process(after_s: float) -> subprocess.Popen[bytes]:
    """A child that exits after ``after_s`` and is reaped at once (as a worker reaps its runs)."""
    child = subprocess.Popen(["sleep", str(after_s)])
    threading.Thread(target=child.wait, daemon=True).start()
    return child


def test_once_the_process_is_gone_a_crashed_run_reads_cancelled(prefect_harness: None) -> None:
    with get_client(sync_client=True) as client:
        run_id = client.create_flow_run(_a_flow).id
        client.set_flow_run_state(run_id, Crashed(message="Execution was aborted"), force=True)
        child = _exiting_process(1.0)
        started = time.monotonic()

        _after_exit(child.pid, run_id, WHY)

        assert child.poll() is not None, "returned before the process was gone"
        assert time.monotonic() - started >= 0.9
        state = client.read_flow_run(run_id).state
        assert state is not None
        assert (state.type, state.message) == (StateType.CANCELLED, WHY)


def test_a_run_that_ended_otherwise_keeps_its_state(prefect_harness: None) -> None:
    with get_client(sync_client=True) as client:
        run_id = client.create_flow_run(_a_flow).id
        client.set_flow_run_state(run_id, Completed(), force=True)

        _after_exit(_exiting_process(0.1).pid, run_id, WHY)

        state = client.read_flow_run(run_id).state
        assert state is not None and state.type == StateType.COMPLETED
