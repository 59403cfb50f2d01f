"""Workers whose wall clock is hours off take, beat and reap locks exactly like correct ones.

Each worker is a process whose ``time.time``/``datetime.now`` are patched before anything else is
imported (see ``skewed.py``). Staleness must be judged on the database clock, so:
- a worker 7 h *behind* writes timestamps that are current, not 7 h old (nobody reaps it early);
- a worker 7 h *ahead* does not see a live run as 7 h silent (it skips, it does not reap);
- a worker 7 h *behind* still reaps a dead run once the threshold has passed on the database clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import Status
from tests.faults import skewed
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, db_time, executions, expect, url_str, wait_for

pytestmark = pytest.mark.faults

JOB = "fault_skew"
# Generous for a loaded machine: a holder that misses beats for 3 s would be reaped early.
STALE_MS, HEARTBEAT_MS = 3000, 150
HOURS_7 = 7 * 3600.0
CLOSE = timedelta(seconds=60)  # far tighter than the skew, far looser than any scheduling delay


def _near(moment: datetime | None, reference: datetime) -> bool:
    return moment is not None and abs(moment - reference) < CLOSE


def _assert_skewed(clock: dict[str, float], reference: datetime, offset_s: float) -> None:
    """The worker really believes the wrong time (else this test would prove nothing)."""
    for name in ("time_time", "datetime_now"):
        off = clock[name] - reference.timestamp()
        assert abs(off - offset_s) < 60, f"{name} is off by {off:.0f}s, expected {offset_s:.0f}s"


def test_skewed_workers_take_beat_and_reap_on_database_time(
    db_url: URL, engine: Engine, children: Children
) -> None:
    common = {
        "url": url_str(db_url),
        "job_type": JOB,
        "stale_ms": STALE_MS,
        "heartbeat_ms": HEARTBEAT_MS,
    }

    # A worker 7 h behind takes the lock and beats.
    started, release, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    holder = children.start(
        SPAWN.Process(
            target=skewed.skewed,
            kwargs={
                "offset_s": -HOURS_7,
                "entry": "hold",
                **common,
                "started": started,
                "release": release,
                "out": out,
            },
        )
    )
    _assert_skewed(expect(out, "clock", 60), db_time(engine), -HOURS_7)
    held_id = expect(out, "started", 60)["id"]

    def beaten() -> bool:
        (row,) = executions(engine, JOB)
        return row.heartbeat_at is not None and row.heartbeat_at > row.started_at

    wait_for(beaten, 10, "the skewed worker's heartbeat")
    now = db_time(engine)
    (row,) = executions(engine, JOB)
    assert _near(row.started_at, now), (row.started_at, now)
    assert _near(row.heartbeat_at, now), (row.heartbeat_at, now)

    # A worker 7 h ahead contends while the run is alive: it must skip, not reap.
    ahead = SPAWN.Queue()
    children.start(
        SPAWN.Process(
            target=skewed.skewed,
            kwargs={
                "offset_s": HOURS_7,
                "entry": "contend",
                **common,
                "barrier": None,
                "attempts": 2,
                "spacing_s": 0.2,
                "out": ahead,
            },
        )
    )
    _assert_skewed(expect(ahead, "clock", 60), db_time(engine), HOURS_7)
    for _ in range(2):
        tried = expect(ahead, "skipped", 30)
        assert tried["kind"] == "already_running"
        assert tried["reason"].startswith(f"already running: execution {held_id} ")
    assert executions(engine, JOB)[0].status == Status.RUNNING

    # The holder dies without a word; a worker 7 h behind reaps it on database time.
    holder.kill()
    holder.join(10)
    reaper = SPAWN.Queue()
    children.start(
        SPAWN.Process(
            target=skewed.skewed,
            kwargs={"offset_s": -HOURS_7, "entry": "acquire_until_won", **common, "out": reaper},
        )
    )
    _assert_skewed(expect(reaper, "clock", 60), db_time(engine), -HOURS_7)
    won = expect(reaper, "acquired", 40)
    children.join_all(60)

    rows = {r.id: r for r in executions(engine, JOB)}
    dead, new = rows[held_id], rows[won["id"]]
    now = db_time(engine)
    assert dead.status == Status.FAILURE
    assert dead.error_message.startswith("abandoned: no heartbeat since ")
    # Reaped only once the threshold had passed on the database clock, and dated by it.
    assert dead.completed_at - dead.heartbeat_at >= timedelta(milliseconds=STALE_MS)
    assert _near(dead.completed_at, now)
    stamp = dead.error_message.removeprefix("abandoned: no heartbeat since ").split(" ")[0]
    assert abs(datetime.fromisoformat(stamp) - dead.heartbeat_at) < timedelta(milliseconds=1)
    assert new.status == Status.SUCCESS
    assert _near(new.started_at, now) and _near(new.completed_at, now)
    assert {r.status for r in rows.values()} == {Status.FAILURE, Status.SKIPPED, Status.SUCCESS}
