"""SIGTERM (what a Prefect worker or Kubernetes sends on shutdown) ends a held lease as FAILURE
"interrupted" before the process goes away, wherever the job body runs."""

from __future__ import annotations

import os
import signal
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import Status
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, executions, expect, url_str, wait_for

pytestmark = pytest.mark.faults

JOB = "fault_term"


def _start(
    children: Children, db_url: URL, where: str, *, install_first: bool, log: Path | None = None
) -> tuple[BaseProcess, int]:
    out = SPAWN.Queue()
    proc = children.start(
        SPAWN.Process(
            target=child.hold_for_sigterm,
            kwargs={
                "url": url_str(db_url),
                "job_type": JOB,
                # A threshold far beyond the test: only the SIGTERM handler can end this row.
                "stale_ms": 600_000,
                "heartbeat_ms": 100,
                "where": where,
                "out": out,
                "install_first": install_first,
                "log_path": str(log or ""),
            },
        )
    )
    exec_id = expect(out, "started", 60)["id"]
    assert proc.pid is not None
    return proc, int(exec_id)


@pytest.mark.parametrize("where", ["main", "body_thread", "lease_thread"])
def test_sigterm_ends_the_row_as_interrupted(
    db_url: URL, engine: Engine, children: Children, where: str
) -> None:
    """In the main thread, in a body thread, or with the whole lease in a worker thread (the
    process installed the handler from its main thread at start-up, as the Prefect layer does)."""
    proc, exec_id = _start(children, db_url, where, install_first=where == "lease_thread")
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGTERM)
    wait_for(lambda: executions(engine, JOB)[0].status != Status.RUNNING, 10, "the row to be ended")
    # The process goes too: a body left running in a non-daemon thread would otherwise go on
    # working after its row was ended.
    proc.join(15)
    assert not proc.is_alive(), "SIGTERM did not end the process"
    assert proc.exitcode == -signal.SIGTERM
    (row,) = executions(engine, JOB)
    assert row.id == exec_id
    assert (row.status, row.error_message) == (Status.FAILURE, "interrupted (SIGTERM)")
    assert row.completed_at is not None


def test_lease_in_a_thread_without_the_handler_says_so(
    db_url: URL, engine: Engine, children: Children, tmp_path: Path
) -> None:
    """Nobody installed the handler from the main thread: Python cannot do it from the job's
    thread, so the lease warns at once; a SIGTERM then leaves the row to the stale reaper."""
    log = tmp_path / "child.log"
    proc, _ = _start(children, db_url, "lease_thread", install_first=False, log=log)
    assert proc.pid is not None
    warning = log.read_text()
    assert "SIGTERM will not end this run as 'interrupted'" in warning
    assert "call prefect_nightly_jobs.interrupts.install() from the main thread" in warning
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(15)
    assert proc.exitcode == -signal.SIGTERM
    (row,) = executions(engine, JOB)
    assert row.status == Status.RUNNING  # until an acquirer reaps it after the threshold
