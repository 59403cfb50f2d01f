"""Every job type, one member per job: the value is what ``job_execution.job_type`` stores."""

from __future__ import annotations

from enum import StrEnum


class JobType(StrEnum):
    IMPORT_EVENTS = "import_events"
    DAILY_ROLLUP = "daily_rollup"
    PURGE_EXPIRED = "purge_expired"
    # <jobctl:job-types>
