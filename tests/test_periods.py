"""The period rule without a flow: the schedule interval that a run closes, from Prefect's own
fire times, with the clock passed in (no patched time)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.schedule import (
    backfill_periods,
    closed_period,
    periods_to_run,
    run_period,
)
from prefect_nightly_jobs.settings import Settings

DAILY = "0 0 * * *"
UTC_TZ = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def settings(cron: str = DAILY, timezone: str = "UTC") -> Settings:
    return Settings(sync_cron_schedule=cron, sync_cron_timezone=timezone)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 29, 0, 0, tzinfo=UTC), date(2026, 11, 28)),  # the scheduled run
        (datetime(2026, 11, 29, 0, 0, 1, tzinfo=UTC), date(2026, 11, 28)),  # a second late
        (datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC), date(2026, 11, 27)),  # not yet closed
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), date(2025, 12, 31)),  # across a year
        (datetime(2028, 3, 1, 0, 0, tzinfo=UTC), date(2028, 2, 29)),  # a leap day
    ],
)
def test_default_cron_at_midnight_of_d_is_for_d_minus_1(moment: datetime, expected: date) -> None:
    assert closed_period(moment, DAILY, UTC_TZ) == expected


def test_a_daily_cron_at_another_hour_closes_the_interval_that_started_the_day_before() -> None:
    at_two = "0 2 * * *"
    assert closed_period(datetime(2026, 11, 29, 2, 0, tzinfo=UTC), at_two, UTC_TZ) == date(
        2026, 11, 28
    )
    # At 01:00 the interval that started at 02:00 yesterday is still open.
    assert closed_period(datetime(2026, 11, 29, 1, 0, tzinfo=UTC), at_two, UTC_TZ) == date(
        2026, 11, 27
    )


def test_an_hourly_cron_is_for_the_day_on_which_the_closed_hour_started() -> None:
    hourly = "0 * * * *"
    assert closed_period(datetime(2026, 11, 29, 0, 0, tzinfo=UTC), hourly, UTC_TZ) == date(
        2026, 11, 28
    )  # closes 23:00-00:00 of the 28th
    assert closed_period(datetime(2026, 11, 29, 1, 0, tzinfo=UTC), hourly, UTC_TZ) == date(
        2026, 11, 29
    )  # closes 00:00-01:00 of the 29th
    assert closed_period(datetime(2026, 11, 29, 5, 30, tzinfo=UTC), hourly, UTC_TZ) == date(
        2026, 11, 29
    )


def test_new_york_across_the_spring_forward_day_of_23_hours() -> None:
    # 2026-03-08 has 23 hours in New York. Midnight on the 9th is 04:00 UTC: its date in UTC,
    # its own local date and "24 hours earlier" (the 7th, 23:00 EST) would all be wrong.
    midnight_9th = datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert midnight_9th.astimezone(NEW_YORK).hour == 0
    assert closed_period(midnight_9th, DAILY, NEW_YORK) == date(2026, 3, 8)
    midnight_8th = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # still EST
    assert closed_period(midnight_8th, DAILY, NEW_YORK) == date(2026, 3, 7)


def test_berlin_across_both_dst_changes() -> None:
    # The 25-hour day: midnight on 26 October 2026 is 23:00 UTC on the 25th.
    assert closed_period(datetime(2026, 10, 25, 23, 0, tzinfo=UTC), DAILY, BERLIN) == date(
        2026, 10, 25
    )
    # 02:30 does not exist on 29 March 2026; Prefect fires at 03:30 CEST (01:30 UTC) instead.
    half_past_two = "30 2 * * *"
    shifted = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert closed_period(shifted, half_past_two, BERLIN) == date(2026, 3, 28)
    next_day = datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert closed_period(next_day, half_past_two, BERLIN) == date(2026, 3, 29)


def test_a_manual_run_uses_the_same_rule_relative_to_now() -> None:
    daily = settings()
    assert run_period(daily, datetime(2026, 11, 29, 10, 15, tzinfo=UTC)) == date(2026, 11, 28)
    assert run_period(daily, datetime(2026, 11, 29, 0, 0, tzinfo=UTC)) == date(2026, 11, 28)
    # In Tokyo it is already the 30th at 15:00 UTC on the 29th: the 29th has ended there.
    tokyo = settings(timezone="Asia/Tokyo")
    assert run_period(tokyo, datetime(2026, 11, 29, 15, 0, tzinfo=UTC)) == date(2026, 11, 29)
    assert run_period(tokyo, datetime(2026, 11, 29, 14, 59, tzinfo=UTC)) == date(2026, 11, 28)
    # A naive clock reading is taken in the schedule's timezone.
    assert run_period(tokyo, datetime(2026, 11, 30, 0, 0)) == date(2026, 11, 29)
    hourly = settings(cron="0 * * * *")
    assert run_period(hourly, datetime(2026, 11, 29, 10, 15, tzinfo=UTC)) == date(2026, 11, 29)


def test_an_explicit_period_overrides_the_rule() -> None:
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert periods_to_run(settings(), moment=now) == [date(2026, 11, 28)]
    assert periods_to_run(settings(), period=date(2025, 6, 1), moment=now) == [date(2025, 6, 1)]


def test_a_backfill_range_is_every_period_of_the_schedule_in_order() -> None:
    assert periods_to_run(
        settings(), period_from=date(2026, 11, 27), period_to=date(2026, 11, 29)
    ) == [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)]
    assert backfill_periods(date(2026, 11, 28), date(2026, 11, 28), DAILY, UTC_TZ) == [
        date(2026, 11, 28)
    ]
    # An hourly schedule still has one period per day; a weekly one only its Mondays.
    every_five_minutes = backfill_periods(
        date(2026, 3, 28), date(2026, 3, 30), "*/5 * * * *", BERLIN
    )
    assert every_five_minutes == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
    mondays = backfill_periods(date(2026, 11, 1), date(2026, 11, 30), "0 0 * * 1", UTC_TZ)
    assert mondays == [date(2026, 11, d) for d in (2, 9, 16, 23, 30)]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {"period_from": date(2026, 11, 29), "period_to": date(2026, 11, 27)},
            "--from 2026-11-29 is after --to 2026-11-27 (period_from, period_to): "
            "give the earlier date first",
        ),
        (
            {"period_from": date(2026, 11, 27)},
            "a backfill needs both ends: give --from and --to (period_from and period_to)",
        ),
        (
            {"period": date(2026, 11, 1), "period_from": date(2026, 11, 1), "period_to": None},
            "--period and --from/--to exclude each other (period, period_from/period_to): "
            "give one period or one range",
        ),
        (
            {"period_from": date(1900, 1, 1), "period_to": date(2100, 12, 31)},
            "a backfill of 73414 days is more than 366: one flow run holds one report per "
            "period; split the range into several backfills",
        ),
        (
            {"period_from": date(2026, 11, 3), "period_to": date(2026, 11, 7)},
            "no period of SYNC_CRON_SCHEDULE '0 0 * * 1' starts from 2026-11-03 to 2026-11-07: "
            "widen the range",
        ),
    ],
)
def test_a_bad_range_is_one_configuration_line(request_: dict[str, date], message: str) -> None:
    weekly = settings(cron="0 0 * * 1") if "no period" in message else settings()
    with pytest.raises(ConfigurationError) as err:
        periods_to_run(weekly, **request_)
    assert err.value.message == message
