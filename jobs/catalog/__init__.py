"""The one place jobs are registered. Registration order breaks ties in the nightly order.

Importing this module defines the jobs (Prefect tasks) but connects to nothing.
"""

from __future__ import annotations

from jobs.catalog.daily_rollup import daily_rollup
from jobs.catalog.import_events import import_events
from jobs.catalog.purge_expired import purge_expired

# <jobctl:imports>
from jobs.registry import Registry
from jobs.task import BackgroundJob

JOBS: tuple[BackgroundJob, ...] = (
    import_events,
    daily_rollup,
    purge_expired,
    # <jobctl:jobs>
)


def registry() -> Registry:
    """The registered jobs' specs, in registration order."""
    return Registry(job.spec for job in JOBS)


def job(job_type: str) -> BackgroundJob:
    """The job of that type; unknown names raise DependencyError listing the known ones."""
    registry().get(job_type)
    return next(j for j in JOBS if j.job_type == job_type)
