"""Who wants to hear how a nightly run is going, in this process (``jobctl nightly``'s progress).

Plain Python, no Prefect, no rich: the dispatcher reports each job starting and finishing to the
listeners registered here; a listener that raises is logged and dropped, never the run's problem.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from prefect_nightly_jobs.outcome import JobOutcome

_log = logging.getLogger(__name__)


class ProgressListener(Protocol):
    def run_started(self, job_types: Sequence[str]) -> None:
        """The jobs of the run, in order, before the first starts."""

    def job_started(self, job_type: str) -> None: ...

    def job_finished(self, outcome: JobOutcome) -> None: ...


_listeners: list[ProgressListener] = []
_guard = threading.Lock()


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Report the runs of this process to ``listener`` until the block ends."""
    with _guard:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _guard:
            if listener in _listeners:
                _listeners.remove(listener)


def _each(call: str, *args: object) -> None:
    with _guard:
        current = list(_listeners)
    for listener in current:
        try:
            getattr(listener, call)(*args)
        except Exception:  # noqa: BLE001 - a display must never break a run
            _log.warning("progress listener %r failed; it is dropped", listener, exc_info=True)
            with _guard:
                if listener in _listeners:
                    _listeners.remove(listener)


def run_started(job_types: Sequence[str]) -> None:
    _each("run_started", list(job_types))


def job_started(job_type: str) -> None:
    _each("job_started", job_type)


def job_finished(outcome: JobOutcome) -> None:
    _each("job_finished", outcome)
