"""The nightly schedule: cron validation (as Prefect will read it) and the periods runs are for.

A run's period is the schedule interval that the run closes: the interval from the fire time
before the run's moment to the last fire time at or before it, stored as the date (in the
schedule's timezone) on which that interval starts. With the default ``0 0 * * *``, the run at
00:00 on day D is for D-1. Fire times come from Prefect's own scheduler code, so daylight saving
gaps and folds resolve exactly as they do for the runs Prefect creates.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.settings import Settings

if TYPE_CHECKING:
    from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

# Far enough back to find two fires of any valid cron (a 29 February needs eight years).
_LOOKBACK_LIMIT = timedelta(days=366 * 9)
_FIRST_LOOKBACK = timedelta(hours=1)
_TICK = timedelta(microseconds=1)


def validate_cron(expression: str, timezone: str = "UTC") -> str:
    """Check a cron expression exactly as a Prefect deployment schedule will; return it."""
    # Imported here: Prefect is heavy, and the settings and the lock never need it.
    from prefect.client.schemas.schedules import CronSchedule  # noqa: PLC0415

    try:
        CronSchedule(cron=expression, timezone=timezone)
    except ValidationError:
        raise ConfigurationError(
            f"SYNC_CRON_SCHEDULE {expression!r} is not a valid cron expression: use five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 0 * * *' (daily at midnight)"
        ) from None
    return expression


def validate_schedule(settings: Settings) -> str:
    return validate_cron(settings.sync_cron_schedule, settings.sync_cron_timezone)


def _scheduler(cron: str, tz: ZoneInfo) -> ServerCronSchedule:
    validate_cron(cron, tz.key)
    # The server's schedule model is the code that creates scheduled flow runs.
    from prefect.server.schemas.schedules import CronSchedule  # noqa: PLC0415

    return CronSchedule(cron=cron, timezone=tz.key)


def _fires(
    schedule: ServerCronSchedule, start: datetime, end: datetime, n: int | None = None
) -> list[datetime]:
    """Fire times from ``start`` to ``end``, both included, at most ``n`` (Prefect caps a call
    at 1000)."""
    # The scheduler's synchronous generator; its public ``get_dates`` is an async wrapper.
    return list(schedule._get_dates_generator(n=n, start=start, end=end))


def fire_times(cron: str, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every fire time of ``cron`` in ``tz`` from ``start`` to ``end`` (both included), in order."""
    schedule = _scheduler(cron, tz)
    cursor = start
    # Prefect 3.4-3.6 can hand back a time before ``start`` (a wall time that does not exist in a
    # DST gap, e.g. 02:30 in Berlin on the day clocks go forward): keep the cursor moving forward.
    while batch := [fire for fire in _fires(schedule, cursor, end) if fire >= cursor]:
        yield from batch
        cursor = batch[-1] + _TICK


def _plain(day: date) -> date:
    # Prefect hands back its own date subclass; rows, reports and comparisons want a date.
    return date(day.year, day.month, day.day)


def _aware(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def last_fires(cron: str, tz: ZoneInfo, moment: datetime) -> tuple[datetime, datetime]:
    """The two latest fire times at or before ``moment``: the interval that closed last."""
    moment = _aware(moment, tz)
    lookback = _FIRST_LOOKBACK
    while lookback <= _LOOKBACK_LIMIT:
        last: deque[datetime] = deque(fire_times(cron, tz, moment - lookback, moment), maxlen=2)
        if len(last) == 2:
            return last[0], last[1]
        lookback *= 2
    raise ConfigurationError(
        f"SYNC_CRON_SCHEDULE {cron!r} did not fire twice in the nine years before "
        f"{moment.isoformat()}: use a schedule that fires, e.g. '0 0 * * *'"
    )


def closed_period(moment: datetime, cron: str, tz: ZoneInfo) -> date:
    """The period of a run at ``moment``: the date, in ``tz``, on which the schedule interval
    that closed last (at or before ``moment``) started.

    A scheduled run's moment is a fire time, so it closes the interval that ends at it; a manual
    run (moment: now) gets the last interval that has ended, as the last scheduled run did.
    """
    opened, _closed = last_fires(cron, tz, moment)
    return _plain(opened.astimezone(tz).date())


def run_period(settings: Settings, moment: datetime | None = None) -> date:
    """The period of a run at ``moment`` (default: now) under SYNC_CRON_SCHEDULE, in
    SYNC_CRON_TIMEZONE."""
    tz = settings.timezone
    return closed_period(moment or datetime.now(tz), settings.sync_cron_schedule, tz)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    # fold=0 puts a midnight that a DST gap skips at the gap's end: the day's first instant.
    return datetime.combine(day, time(), tzinfo=tz)


# A backfill is one flow run with one report and one artifact per period: bounded.
MAX_BACKFILL_DAYS = 366


def backfill_periods(first: date, last: date, cron: str, tz: ZoneInfo) -> list[date]:
    """The periods of a backfill from ``first`` to ``last`` (both included), in order: the dates
    on which an interval of the schedule starts, i.e. every day for a daily or hourly cron and
    only Mondays for ``0 0 * * 1``."""
    validate_request(None, first, last)
    schedule = _scheduler(cron, tz)
    end = _midnight(last + timedelta(days=1), tz) - _TICK
    periods: list[date] = []
    cursor = _midnight(first, tz)
    # One fire per day is enough: jump to the next day instead of walking every fire time.
    while fire := _fires(schedule, cursor, end, n=1):
        day = _plain(fire[0].astimezone(tz).date())
        periods.append(day)
        cursor = _midnight(day + timedelta(days=1), tz)
    if not periods:
        raise ConfigurationError(
            f"no period of SYNC_CRON_SCHEDULE {cron!r} starts from {first.isoformat()} to "
            f"{last.isoformat()}: widen the range"
        )
    return periods


def validate_request(period: date | None, period_from: date | None, period_to: date | None) -> None:
    """One period or one range, in order; a ConfigurationError line otherwise."""
    if period is not None and (period_from is not None or period_to is not None):
        raise ConfigurationError(
            "--period and --from/--to exclude each other (period, period_from/period_to): "
            "give one period or one range"
        )
    if (period_from is None) != (period_to is None):
        raise ConfigurationError(
            "a backfill needs both ends: give --from and --to (period_from and period_to)"
        )
    if period_from is not None and period_to is not None and period_from > period_to:
        raise ConfigurationError(
            f"--from {period_from.isoformat()} is after --to {period_to.isoformat()} "
            "(period_from, period_to): give the earlier date first"
        )
    if period_from is not None and period_to is not None:
        days = (period_to - period_from).days + 1
        if days > MAX_BACKFILL_DAYS:
            raise ConfigurationError(
                f"a backfill of {days} days is more than {MAX_BACKFILL_DAYS}: one flow run "
                "holds one report per period; split the range into several backfills"
            )


def periods_to_run(
    settings: Settings,
    *,
    period: date | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    moment: datetime | None = None,
) -> list[date]:
    """What a nightly run is for: ``period`` if given, every period from ``period_from`` to
    ``period_to`` for a backfill, else the period of a run at ``moment`` (default: now)."""
    validate_request(period, period_from, period_to)
    if period_from is not None and period_to is not None:
        tz = settings.timezone
        return backfill_periods(period_from, period_to, settings.sync_cron_schedule, tz)
    return [period if period is not None else run_period(settings, moment)]


def parse_period(text: str, option: str = "period") -> date:
    """A --period / --from / --to value: an ISO date."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-28"
        ) from None
