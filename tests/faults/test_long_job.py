"""A job that runs for ten thresholds while alive is never stale: every contender skips."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import Status
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, drain, executions, expect, url_str

pytestmark = pytest.mark.faults

JOB = "fault_long"
# Ten beats per threshold: on 2 busy cores (load 6) a live job was once reaped with 1 s / 200 ms; a
# loaded CI machine must not fail this test; its point is the 10x duration, not a tight margin.
STALE_MS, HEARTBEAT_MS = 1500, 150
RUN_FOR_S = 10 * STALE_MS / 1000
CONTENDERS, ATTEMPTS = 8, 4


def test_long_job_with_heartbeats_is_never_reaped(
    db_url: URL, engine: Engine, children: Children
) -> None:
    common = {
        "url": url_str(db_url),
        "job_type": JOB,
        "stale_ms": STALE_MS,
        "heartbeat_ms": HEARTBEAT_MS,
    }
    started, release, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    # Eight processes will try to take the same job, each a few times spread over the whole run.
    # They start (slowly: a Python process each) together with the job and then wait for it.
    barrier = SPAWN.Barrier(CONTENDERS + 1)
    tries = SPAWN.Queue()
    spacing = (RUN_FOR_S - 1) / (ATTEMPTS - 1)
    for i in range(CONTENDERS):
        children.start(
            SPAWN.Process(
                target=child.contend,
                kwargs={
                    **common,
                    "barrier": barrier,
                    "attempts": ATTEMPTS,
                    "spacing_s": spacing,
                    "out": tries,
                },
                name=f"contender-{i}",
            )
        )
    children.start(
        SPAWN.Process(
            target=child.hold,
            kwargs={**common, "started": started, "release": release, "out": out},
            name="long-job",
        )
    )
    held_id = expect(out, "started", 60)["id"]
    began = time.monotonic()
    barrier.wait(60)
    results = drain(tries, CONTENDERS * ATTEMPTS, RUN_FOR_S + 60)
    time.sleep(max(0.0, RUN_FOR_S - (time.monotonic() - began)))
    release.set()
    done = expect(out, "done", 30)
    children.join_all(60)

    assert [r["event"] for r in results] == ["skipped"] * (CONTENDERS * ATTEMPTS), results
    for r in results:
        assert r["kind"] == "already_running"
        assert r["reason"].startswith(f"already running: execution {held_id} "), r

    assert done["recorded"] and done["lock_lost"] is None, done
    rows = executions(engine, JOB)
    (run,) = [r for r in rows if r.status != Status.SKIPPED]
    assert run.id == held_id and run.status == Status.SUCCESS
    assert run.completed_at - run.started_at >= timedelta(milliseconds=10 * STALE_MS)
    skipped = [r for r in rows if r.status == Status.SKIPPED]
    assert len(skipped) == CONTENDERS * ATTEMPTS
    # The contenders' last tries came after many thresholds: only heartbeats kept the run alive.
    assert max(r.started_at for r in skipped) - run.started_at > timedelta(
        milliseconds=5 * STALE_MS
    )
