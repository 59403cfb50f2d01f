"""SIGTERM handling: end every lease this process holds as FAILURE "interrupted", then let the
previous handler (Prefect's, or the default) do its job.

Prefect workers and Kubernetes send SIGTERM on shutdown and cancellation. The job body may be in
any thread, so the handler finishes the leases itself instead of hoping an exception reaches them.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.lease import Lease

_FINISH_TIMEOUT_S = 10.0
_active: set[Lease] = set()
_guard = threading.Lock()
_previous: Any = signal.SIG_DFL


def register(lease: Lease) -> None:
    with _guard:
        _active.add(lease)
    install()


def unregister(lease: Lease) -> None:
    with _guard:
        _active.discard(lease)


def install() -> None:
    """Chain our SIGTERM handler in front of the current one (main thread only, idempotent)."""
    global _previous  # noqa: PLW0603 - one handler per process, by nature of signals
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return
    _previous = current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _finish_all() -> None:
    with _guard:
        leases = list(_active)
    for lease in leases:
        lease.interrupt("interrupted (SIGTERM)")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The write runs in a helper thread: the interrupted main thread may hold a pool lock.
    worker = threading.Thread(target=_finish_all, name="sigterm-finish", daemon=True)
    worker.start()
    worker.join(_FINISH_TIMEOUT_S)
    previous = _previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        raise SystemExit(128 + signum)
