"""A SIGTERM that is Prefect cancelling the flow run ends the running rows as "cancelled (…)".

Prefect cancels a flow run by setting it Cancelling; the worker then sends the flow-run process
SIGTERM. The signal itself does not say which, so the handler asks the API for the flow run's
state (bounded: see ``interrupts``). Any other SIGTERM stays "interrupted (SIGTERM)".

Once the rows are ended, the flow run is set Cancelled: the worker otherwise reports a process
that exits on SIGTERM as Crashed when its own cancel bookkeeping loses the race (observed with
Prefect 3.9's process worker), and a cancelled run must read Cancelled. Prefect's flow engine
then handles the same signal as a crash and forces Crashed ("Execution was aborted by a
termination signal") as the process dies, without running exit hooks. So a small detached
process (``python -m prefect_nightly_jobs.cancellation PID RUN_ID WHY``) waits for this one to be
gone and says Cancelled once more, over that Crashed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled

from prefect_nightly_jobs import interrupts

_TIMEOUT_S = 2.0
_CANCELLED = {StateType.CANCELLING, StateType.CANCELLED}
# What a cancelled run may read while its process ends: ours to set Cancelled.
_ENDING = {StateType.CANCELLING, StateType.CRASHED}
_PREFIX = "cancelled ("


def why_terminated() -> str | None:
    """Says "cancelled (…)" when this process's flow run is being cancelled, else None."""
    # The worker puts the flow run id in the environment of the process it starts; the context
    # variables of the run are not visible from the handler's thread.
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not flow_run_id:
        return None
    with get_client(sync_client=True, httpx_settings={"timeout": _TIMEOUT_S}) as client:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
    state = run.state
    if state is None or state.type not in _CANCELLED:
        return None
    said = f": {state.message}" if state.message else ""
    return f"{_PREFIX}flow run {run.name} is {state.name} in Prefect{said})"


def _set_cancelled(run_id: uuid.UUID, why: str, over: set[StateType]) -> None:
    with get_client(sync_client=True, httpx_settings={"timeout": _TIMEOUT_S}) as client:
        state = client.read_flow_run(run_id).state
        if state is not None and state.type in over:
            client.set_flow_run_state(run_id, Cancelled(message=why), force=True)


_WAIT_FOR_EXIT_S = 60.0


def _after_exit(pid: int, run_id: uuid.UUID, why: str) -> None:
    """In the detached process: once ``pid`` is gone, Cancelled over the engine's Crashed."""
    deadline = time.monotonic() + _WAIT_FOR_EXIT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # the pid was reused by another user's process: ours is gone
            break
        time.sleep(0.2)
    for _ in range(3):
        try:
            _set_cancelled(run_id, why, _ENDING)
            return
        except Exception:  # noqa: BLE001 - best effort; the rows already say why
            time.sleep(1.0)


def _watch_exit(run_id: uuid.UUID, why: str) -> None:
    args = [sys.executable, "-m", __name__, str(os.getpid()), str(run_id), why]
    subprocess.Popen(
        args,
        start_new_session=True,  # outlives this process and the worker's kill of its group
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def end_cancelled(why: str) -> None:
    """After the rows: a flow run still Cancelling becomes Cancelled with the rows' message, now
    and again once the process has exited (over the engine's own Crashed)."""
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not flow_run_id or not why.startswith(_PREFIX):
        return
    run_id = uuid.UUID(flow_run_id)
    try:
        _watch_exit(run_id, why)
    finally:  # a watcher that could not start must not cost the Cancelled said now
        _set_cancelled(run_id, why, {StateType.CANCELLING})


def install() -> None:
    interrupts.explain_sigterm_with(why_terminated, after=end_cancelled)


if __name__ == "__main__":
    _after_exit(int(sys.argv[1]), uuid.UUID(sys.argv[2]), sys.argv[3])
