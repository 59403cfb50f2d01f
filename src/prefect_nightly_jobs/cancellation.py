"""A SIGTERM that is Prefect cancelling the flow run ends the running rows as "cancelled (…)".

Prefect cancels a flow run by setting it Cancelling; the worker then sends the flow-run process
SIGTERM. The signal itself does not say which, so the handler asks the API for the flow run's
state (bounded: see ``interrupts``). Any other SIGTERM stays "interrupted (SIGTERM)".

Once the rows are ended, the flow run is set Cancelled: the worker otherwise reports a process
that exits on SIGTERM as Crashed when its own cancel bookkeeping loses the race (observed with
Prefect 3.9's process worker), and a cancelled run must read Cancelled.
"""

from __future__ import annotations

import os
import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled

from prefect_nightly_jobs import interrupts

_TIMEOUT_S = 2.0
_CANCELLED = {StateType.CANCELLING, StateType.CANCELLED}
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


def end_cancelled(why: str) -> None:
    """After the rows: a flow run still Cancelling becomes Cancelled with the rows' message."""
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not flow_run_id or not why.startswith(_PREFIX):
        return
    with get_client(sync_client=True, httpx_settings={"timeout": _TIMEOUT_S}) as client:
        run_id = uuid.UUID(flow_run_id)
        state = client.read_flow_run(run_id).state
        if state is not None and state.type == StateType.CANCELLING:
            client.set_flow_run_state(run_id, Cancelled(message=why), force=True)


def install() -> None:
    interrupts.explain_sigterm_with(why_terminated, after=end_cancelled)
