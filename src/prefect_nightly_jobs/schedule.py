"""The nightly schedule: cron validation (as Prefect will read it) and the run's logical period."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.settings import Settings


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


def logical_period(scheduled: datetime | None, tz: ZoneInfo) -> date:
    """The date a nightly run is for: its scheduled start in the schedule's timezone, else today."""
    moment = scheduled if scheduled is not None else datetime.now(tz)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(tz).date()


def parse_period(text: str) -> date:
    """A --period / backfill value: an ISO date."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"period {text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-28"
        ) from None
