"""Running a flow in-process on Prefect's throwaway (ephemeral) server, cleanly.

Without PREFECT_API_URL, Prefect starts a server subprocess on a fresh SQLite file and stops it at
exit. Three things make that noisy or fragile, and are handled here:

- its first start migrates the SQLite file, which can take longer than Prefect's default 20 s wait
  on a slow or busy machine: the wait is raised (an explicit setting still wins);
- its telemetry heartbeat races that start-up on the same file and logs a "database is locked"
  traceback: a throwaway server has nothing to report, so telemetry is off (unless set);
- stopping it while its task-run recorder is still writing the last task-run events logs an
  "Error flushing events" traceback: ``settle`` waits (bounded) until every task run of the flow
  run is recorded as final, which also makes the run complete for anyone reading it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

EPHEMERAL_STARTUP_TIMEOUT_S = 120
SETTLE_TIMEOUT_S = 15.0


@contextmanager
def local_prefect() -> Iterator[bool]:
    """Defaults for the throwaway server; yields True when that server is used."""
    if PREFECT_API_URL.value():
        yield False
        return
    # The server is a subprocess that reads the environment; the timeout is read in-process.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with temporary_settings(
        set_defaults={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: EPHEMERAL_STARTUP_TIMEOUT_S}
    ):
        yield True


def settle(flow_run_id: str | None, task_runs: int, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Wait until the server has recorded ``task_runs`` final task runs for the flow run.

    Returns False if it did not within ``timeout_s`` (the run itself is unaffected).
    """
    if flow_run_id is None or task_runs == 0:
        return True
    only_this_run = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=only_this_run)
            if len(runs) >= task_runs and all(r.state and r.state.is_final() for r in runs):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
