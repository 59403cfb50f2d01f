"""The liveness signal of a running execution: beats sent by a background thread.

One daemon thread per process beats for every running execution when its beat is due. A thread of
its own per execution cost a thread start and a join on every lock (about a third of the lock's
round trip on a busy machine, bench row 1), while a beat is one short UPDATE. The thread is still
separate from the job body, so a busy or blocked body cannot stop the beats.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, bindparam, exc, update

from jobs.clock import db_now
from jobs.database import describe_db_error
from jobs.models import Status, status_is
from jobs.models import job_execution as _table

log = logging.getLogger("jobs.heartbeat")


_BEAT = (
    update(_table)
    .where(_table.c.id == bindparam("execution_id"), status_is(Status.RUNNING))
    .values(heartbeat_at=db_now())
)


def beat(engine: Engine, execution_id: int) -> bool:
    """Refresh the heartbeat of a RUNNING row; False means the row is no longer ours to beat.

    An explicit transaction, not autocommit: a beat every few seconds gains nothing from saving
    two round trips, and the fault tests hold a beat's COMMIT to keep its row locked."""
    with engine.begin() as conn:
        return conn.execute(_BEAT, {"execution_id": execution_id}).rowcount == 1


class Heartbeat:
    """Beats every ``interval_ms`` (on the process's heartbeat thread) until stopped.

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
        self.interval = interval_ms / 1000.0
        self.label = label
        self._on_lost = on_lost
        self._stop = threading.Event()
        # Held while a beat of this execution is in flight, so stop() can wait for it to end.
        self._beating = threading.RLock()
        self._failing = False
        self.lost = threading.Event()
        self.last_ok = time.monotonic()
        self.beats = 0
        self.failures = 0

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        _beater().add(self, time.monotonic() + self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        """No beat of this execution is sent after this returns (or after ``timeout``)."""
        self._stop.set()
        # Re-entrant: a lost-lock callback that stops its own heartbeat does not wait for itself.
        if self._beating.acquire(timeout=timeout):
            self._beating.release()

    def tick(self) -> bool:
        """Send one beat; True while there is reason to keep beating."""
        with self._beating:
            if self._stop.is_set():
                return False
            # The database dates the beat somewhere between sending and confirming it; counting
            # silence from the send keeps still_held() on the safe side of a slow commit, so a
            # holder never believes in a lock that another process may already have reaped.
            sent = time.monotonic()
            try:
                alive = beat(self._engine, self._execution_id)
            except (exc.OperationalError, exc.InterfaceError) as err:
                self.failures += 1
                if not self._failing:
                    log.warning(
                        "%s heartbeat failed, retrying every %.1fs: %s",
                        self.label,
                        self.interval,
                        describe_db_error(err, self._engine.url),
                    )
                self._failing = True
                return True
            if self._failing:
                log.warning("%s heartbeat recovered after %d failures", self.label, self.failures)
                self._failing = False
            if not alive:
                if not self._stop.is_set():
                    log.error(
                        "%s lock lost: execution %d is no longer RUNNING (reaped or released)",
                        self.label,
                        self._execution_id,
                    )
                    self.lost.set()
                    if self._on_lost is not None:
                        self._on_lost()
                return False
            self.beats += 1
            self.last_ok = sent
            return True


class _Beater:
    """The process's heartbeat thread: a queue of heartbeats ordered by when they are due.

    Stopped heartbeats are dropped when they come due, so stop() never searches the queue. The
    thread starts with the first heartbeat and then waits, idle, for the next one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Heartbeat]] = []
        self._order = itertools.count()  # ties in due time never compare Heartbeat objects
        self._thread: threading.Thread | None = None

    def add(self, heartbeat: Heartbeat, due: float) -> None:
        with self._cond:
            heapq.heappush(self._due, (due, next(self._order), heartbeat))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeat-all", daemon=True)
                self._thread.start()
            elif self._due[0][2] is heartbeat:
                self._cond.notify()  # due before whatever the thread is waiting for

    def _next_due(self) -> Heartbeat:
        with self._cond:
            while True:
                while self._due and self._due[0][2].stopped:
                    heapq.heappop(self._due)
                if not self._due:
                    self._cond.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._due)[2]
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            heartbeat = self._next_due()
            try:
                again = heartbeat.tick()
            except Exception:  # one execution's unexpected error must not stop everyone's beats
                log.exception("heartbeat of %s failed unexpectedly", heartbeat.label)
                again = True
            if again:
                self.add(heartbeat, time.monotonic() + heartbeat.interval)


_BEATER = _Beater()


def _beater() -> _Beater:
    return _BEATER


def _after_fork_in_child() -> None:
    # A forked child has no heartbeat thread and maybe a lock held by a thread that is not there.
    global _BEATER  # noqa: PLW0603 - the one process-wide instance, replaced only after fork
    _BEATER = _Beater()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
