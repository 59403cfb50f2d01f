"""Small bounded helpers shared by the fault tests."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, Row, select, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs.models import job_execution

SPAWN = multiprocessing.get_context("spawn")
T = TypeVar("T")


def url_str(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def expect(events: queue.Queue[dict[str, Any]], name: str, timeout: float) -> dict[str, Any]:
    """The next event called ``name`` from a child (earlier events of other names are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {name!r} event from the child within {timeout}s")
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            continue
        if event["event"] == name:
            return event


def drain(events: queue.Queue[dict[str, Any]], count: int, timeout: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {len(got)} of {count} events within {timeout}s: {got}")
        try:
            got.append(events.get(timeout=left))
        except queue.Empty:
            continue
    return got


def executions(engine: Engine, job_type: str | None = None) -> Sequence[Row[Any]]:
    stmt = select(job_execution).order_by(job_execution.c.id)
    if job_type is not None:
        stmt = stmt.where(job_execution.c.job_type == job_type)
    with engine.connect() as conn:
        return conn.execute(stmt).all()


def db_time(engine: Engine) -> datetime:
    from prefect_nightly_jobs.clock import db_now

    with engine.connect() as conn:
        value: datetime = conn.execute(select(db_now())).scalar_one()
        return value


def running_count(engine: Engine, job_type: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM job_execution WHERE job_type = :t AND status = 'RUNNING'"
                ),
                {"t": job_type},
            ).scalar_one()
        )
