"""Proof that a lease's process is alive, for SQLite: an exclusive ``flock`` on a file per lease.

On SQLite every writer shares one write lock, so a job whose transaction stays open would keep its
own heartbeat from being written. The embedded database is on one host, so liveness there comes
from something the job cannot block: while a lease is held, its process holds an exclusive flock
on ``<database>-leases/<execution id>``. The kernel releases it when the process ends, however it
ends (SIGKILL included). A reaper that cannot take the flock knows the holder is alive.

PostgreSQL needs none of this: its rows are reaped by heartbeat age alone (many hosts).
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import URL

log = logging.getLogger("prefect_nightly_jobs.liveness")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite falls back to heartbeats alone
    fcntl = None  # type: ignore[assignment]


def lease_dir(url: URL) -> Path | None:
    """Where a SQLite database keeps its lease files; None for other databases (or Windows).

    Beside the database's real file (symlinks resolved), so that every name of one database
    finds the same leases."""
    if url.get_backend_name() != "sqlite" or not url.database or fcntl is None:
        return None
    return Path(f"{os.path.realpath(url.database)}-leases")


class HeldLease:
    """The flock a live lease holds; ``release()`` drops it and removes the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid = os.getpid()
        path.parent.mkdir(exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        # Blocking: a probe may hold the lock for the microseconds between its open and close.
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        _held.add(self)

    def release(self) -> None:
        if self._fd is None:
            return
        if self._pid == os.getpid():  # only the holder removes the file
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def _close_inherited(self) -> None:
        # A forked child shares the holder's open file description, and with it the flock: its
        # copy must go, or the lease would outlive the holder for as long as the child lives.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_held: weakref.WeakSet[HeldLease] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lease in list(_held):
        lease._close_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def hold(directory: Path | None, execution_id: int) -> HeldLease | None:
    """Hold the lease's flock; None (heartbeats alone prove liveness) where that is impossible."""
    if directory is None:
        return None
    try:
        return HeldLease(directory / str(execution_id))
    except OSError as err:
        log.warning(
            "cannot hold lease file %s (%s): liveness falls back to heartbeats, so a job whose "
            "open transaction blocks its heartbeat for STALE_JOB_THRESHOLD_MS may be reaped",
            directory / str(execution_id),
            err,
        )
        return None


def is_alive(directory: Path | None, execution_id: int) -> bool:
    """True when a process holds the lease's flock. A missing file means nobody does.

    The probe opens the file without creating it and never keeps the lock: flock is per open file
    description, so even a probe from the holder's own process sees the holder's lock.
    """
    if directory is None:
        return False
    try:
        fd = os.open(directory / str(execution_id), os.O_RDWR)
    except OSError:  # missing (nobody holds it), or unreadable: heartbeats alone decide
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock, if it got one
    return False


@contextlib.contextmanager
def exclusive(url: URL, name: str) -> Iterator[bool]:
    """True while this process alone holds the flock ``name`` beside a SQLite database (False if
    another does; True where no such lock exists: other databases lock in the database)."""
    directory = lease_dir(url)
    if directory is None:
        yield True
        return
    directory.mkdir(exist_ok=True)
    fd = os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
