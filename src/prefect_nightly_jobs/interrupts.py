"""SIGTERM handling: end every lease this process holds as FAILURE "interrupted", then let the
previous handler (Prefect's, or the default) do its job.

Prefect workers and Kubernetes send SIGTERM on shutdown and cancellation. The job body may be in
any thread, so the handler finishes the leases itself instead of hoping an exception reaches them.

Python only lets the main thread install a signal handler. A lease entered in the main thread
installs it; a process whose leases are entered in other threads (a thread-pool task runner)
must call ``install()`` from its main thread at start-up, or SIGTERM leaves its rows to be reaped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_nightly_jobs.lease import Lease

_FINISH_TIMEOUT_S = 10.0
_EXPLAIN_TIMEOUT_S = 3.0
# Exceptions that stop the run rather than fail the job: recorded, then re-raised. Any other
# BaseException (SystemExit, a library's own) is the job's failure and does not stop the flow.
_interruptions: tuple[type[BaseException], ...] = (
    KeyboardInterrupt,
    asyncio.CancelledError,
    GeneratorExit,
)
_active: set[Lease] = set()
_guard = threading.Lock()
_previous: Any = signal.SIG_DFL
_warned = False
_deferred: int | None = None
# Says why this SIGTERM came (the Prefect layer: "cancelled (…)"); None: plain "interrupted".
_explainer: Callable[[], str | None] | None = None
# Called with that answer once the rows are ended (the Prefect layer ends a cancelled flow run).
_after: Callable[[str], None] | None = None
log = logging.getLogger("prefect_nightly_jobs.interrupts")


def add_interruption(kind: type[BaseException]) -> None:
    """Treat ``kind`` as an interruption (the Prefect layer adds its termination signals)."""
    global _interruptions  # noqa: PLW0603 - a process-wide classification, set at import time
    if kind not in _interruptions:
        _interruptions = (*_interruptions, kind)


def is_interruption(err: BaseException) -> bool:
    return isinstance(err, _interruptions)


def register(lease: Lease) -> None:
    with _guard:
        _active.add(lease)
    if not install():
        _warn_not_installed(lease)


def unregister(lease: Lease) -> None:
    with _guard:
        _active.discard(lease)


def install() -> bool:
    """Chain our SIGTERM handler in front of the current one (idempotent).

    Returns whether SIGTERM is covered: False when called outside the main thread before the
    handler was ever installed (Python allows ``signal.signal`` in the main thread only).
    """
    global _previous  # noqa: PLW0603 - one handler per process, by nature of signals
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current == signal.SIG_IGN:
        return True  # ours already, or the process ignores SIGTERM: nothing would interrupt it
    if threading.current_thread() is not threading.main_thread():
        return False
    _previous = current
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def _warn_not_installed(lease: Lease) -> None:
    global _warned  # noqa: PLW0603 - once per process
    if _warned:
        return
    _warned = True
    log.warning(
        "%s SIGTERM will not end this run as 'interrupted': its lease was entered outside the "
        "main thread before the handler was installed; call "
        "prefect_nightly_jobs.interrupts.install() from the main thread at start-up (until "
        "then, a terminated run is reaped after STALE_JOB_THRESHOLD_MS)",
        lease.label,
    )


def explain_sigterm_with(
    explainer: Callable[[], str | None], after: Callable[[str], None] | None = None
) -> None:
    """Name the cause of a SIGTERM in the rows it ends (asked once, bounded to a few seconds);
    ``after(why)`` runs once they are ended."""
    global _explainer, _after
    _explainer, _after = explainer, after


def _why() -> str:
    explainer = _explainer
    if explainer is None:
        return "interrupted (SIGTERM)"
    answer: list[str | None] = []

    def ask() -> None:
        try:
            answer.append(explainer())
        except Exception as err:  # noqa: BLE001 - the rows must still end
            log.warning("could not tell why SIGTERM came: %s", err)

    asking = threading.Thread(target=ask, name="sigterm-explain", daemon=True)
    asking.start()
    asking.join(_EXPLAIN_TIMEOUT_S)  # never let the question keep the rows RUNNING
    return (answer[0] if answer else None) or "interrupted (SIGTERM)"


def _finish_all() -> None:
    with _guard:
        leases = list(_active)
    if not leases:
        return
    why = _why()
    for lease in leases:
        lease.interrupt(why)
    after = _after
    if after is not None:
        try:
            after(why)
        except Exception as err:  # noqa: BLE001 - the rows are ended; this is a courtesy
            log.warning("after SIGTERM: %s", err)


def signal_pending() -> bool:
    """A SIGTERM waits for a final write of this thread: retries must give up now, not later."""
    return _deferred is not None


def deliver_deferred() -> None:
    """Called by a lease when it has written its final status: a SIGTERM that arrived while this
    thread was writing it is handled now."""
    global _deferred
    signum, _deferred = _deferred, None
    if signum is not None and threading.current_thread() is threading.main_thread():
        _on_sigterm(signum, None)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _deferred  # noqa: PLW0603
    with _guard:
        leases = list(_active)
    if any(lease.finishing_here() for lease in leases):
        # The main thread was stopped in the middle of writing a final status (its commit, say):
        # the handler cannot write over it, nor wait for it. Let it end, then handle the signal.
        _deferred = signum
        return
    # The write runs in a helper thread: the interrupted main thread may hold a pool lock.
    worker = threading.Thread(target=_finish_all, name="sigterm-finish", daemon=True)
    worker.start()
    worker.join(_FINISH_TIMEOUT_S)
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    # The default action, as if we had never been here: the process ends now. Not SystemExit: it
    # only unwinds the main thread, and a body running in another (non-daemon) thread would keep
    # working after its row was ended, while another worker may already run the same job.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork_in_child() -> None:
    # A forked child (a multiprocessing pool worker, say) holds none of its parent's leases: a
    # SIGTERM to the child must not end the parent's rows.
    global _guard  # noqa: PLW0603 - replaced only in a new child process
    _active.clear()
    _guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
