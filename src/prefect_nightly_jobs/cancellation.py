"""A SIGTERM that is Prefect cancelling the flow run ends the running rows as "cancelled (…)".

Prefect cancels a flow run by setting it Cancelling; the worker then sends the flow-run process
SIGTERM. The signal itself does not say which, so the handler asks the API for the flow run's
state (bounded: see ``interrupts``). Any other SIGTERM stays "interrupted (SIGTERM)".
"""

from __future__ import annotations

import os
import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from prefect_nightly_jobs import interrupts

_TIMEOUT_S = 2.0
_CANCELLED = {StateType.CANCELLING, StateType.CANCELLED}


def why_terminated() -> str | None:
    """ "cancelled (…)" when this process's flow run is being cancelled, else None."""
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
    return f"cancelled (flow run {run.name} is {state.name} in Prefect{said})"


def install() -> None:
    interrupts.explain_sigterm_with(why_terminated)
