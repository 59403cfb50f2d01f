"""Child entry points whose wall clock is off by hours.

The clock is patched before the project (or SQLAlchemy, or the driver) is imported in the child, so
every ``time.time()``, ``datetime.now()``, ``datetime.utcnow()``, ``datetime.today()`` and
``date.today()`` the worker makes is skewed (``date.today`` reads ``time.time``). This module must
therefore not import ``jobs`` at the top. The monotonic clock is left alone: it measures intervals
and has no notion of the time of day to be wrong about.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from typing import Any


def skew_clock(offset_s: float) -> None:
    real_time = _time.time
    real_time_ns = _time.time_ns
    real_datetime = _dt.datetime
    delta = _dt.timedelta(seconds=offset_s)

    _time.time = lambda: real_time() + offset_s
    _time.time_ns = lambda: real_time_ns() + int(offset_s * 1e9)

    class SkewedDateTime(real_datetime):
        __slots__ = ()  # same layout as datetime, so C extensions accept it unchanged

        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> Any:
            return real_datetime.now(tz) + delta

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.utcnow() + delta

        @classmethod
        def today(cls) -> Any:
            return real_datetime.today() + delta

    _dt.datetime = SkewedDateTime  # type: ignore[misc]


def _worker_clock() -> dict[str, float]:
    """What this worker believes the time is, to prove the skew is in effect."""
    from datetime import UTC, datetime  # here, not at the top: must bind the patched class

    return {"time_time": _time.time(), "datetime_now": datetime.now(UTC).timestamp()}


def skewed(*, offset_s: float, entry: str, **kwargs: Any) -> None:
    """Skew this process's clock, then run ``children.<entry>(**kwargs)``."""
    skew_clock(offset_s)
    from tests.faults import children  # imported only now, so it binds the skewed clock

    kwargs["out"].put({"event": "clock", **_worker_clock()})
    getattr(children, entry)(**kwargs)
