"""The liveness signal of a running execution: a background thread with its own connection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, exc, update

from jobs.clock import db_now
from jobs.database import describe_db_error
from jobs.models import Status
from jobs.models import job_execution as _table

log = logging.getLogger("jobs.heartbeat")


def beat(engine: Engine, execution_id: int) -> bool:
    """Refresh the heartbeat of a RUNNING row; False means the row is no longer ours to beat."""
    stmt = (
        update(_table)
        .where(_table.c.id == execution_id, _table.c.status == Status.RUNNING)
        .values(heartbeat_at=db_now())
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


class Heartbeat:
    """Beats every ``interval_ms`` on a daemon thread, so a busy or blocked job body cannot stop it.

    A database outage is retried at every interval (the lock's owner is judged by the database, so
    there is nothing else to do); a beat that finds the row no longer RUNNING marks the lock lost.
    """

    def __init__(
        self,
        engine: Engine,
        execution_id: int,
        interval_ms: int,
        *,
        label: str,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._execution_id = execution_id
        self._interval = interval_ms / 1000.0
        self._label = label
        self._on_lost = on_lost
        self._stop = threading.Event()
        self.lost = threading.Event()
        self.last_ok = time.monotonic()
        self.beats = 0
        self.failures = 0
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{execution_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            # The database dates the beat somewhere between sending and confirming it; counting
            # silence from the send keeps still_held() on the safe side of a slow commit, so a
            # holder never believes in a lock that another process may already have reaped.
            sent = time.monotonic()
            try:
                alive = beat(self._engine, self._execution_id)
            except (exc.OperationalError, exc.InterfaceError) as err:
                self.failures += 1
                if not failing:
                    log.warning(
                        "%s heartbeat failed, retrying every %.1fs: %s",
                        self._label,
                        self._interval,
                        describe_db_error(err, self._engine.url),
                    )
                failing = True
                continue
            if failing:
                log.warning("%s heartbeat recovered after %d failures", self._label, self.failures)
                failing = False
            if not alive:
                if not self._stop.is_set():
                    log.error(
                        "%s lock lost: execution %d is no longer RUNNING (reaped or released)",
                        self._label,
                        self._execution_id,
                    )
                    self.lost.set()
                    if self._on_lost is not None:
                        self._on_lost()
                return
            self.beats += 1
            self.last_ok = sent
