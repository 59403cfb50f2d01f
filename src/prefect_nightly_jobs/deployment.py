"""The ``prefect.yaml`` build step: the deployment's settings, validated.

``{{ $SYNC_CRON_SCHEDULE }}`` alone would render "" when the variable is unset, and an invalid cron
must stop ``prefect deploy`` with one clear line rather than reach the server. So the build step
``prefect_nightly_jobs.deployment.deployment_settings`` (id ``settings``) returns the values,
defaults applied and checked as Prefect will read them, for ``{{ settings.cron }}``,
``{{ settings.timezone }}``, ``{{ settings.reconcile_interval }}`` and
``{{ settings.project_dir }}``.
"""

from __future__ import annotations

from prefect_nightly_jobs.errors import JobsError
from prefect_nightly_jobs.project import find_project
from prefect_nightly_jobs.schedule import validate_schedule
from prefect_nightly_jobs.settings import load_settings


def deployment_settings() -> dict[str, str | int]:
    """SYNC_CRON_SCHEDULE (default ``0 0 * * *``), SYNC_CRON_TIMEZONE (default UTC),
    RECONCILE_INTERVAL_SECONDS (default 60) and the project directory, where a process worker
    starts each flow run."""
    try:
        settings = load_settings()
        cron = validate_schedule(settings)
    except JobsError as err:
        # SystemExit passes through Prefect's CLI untouched: one line on stderr, exit code 1,
        # instead of a StepExecutionError traceback.
        raise SystemExit(f"error: {err.message}") from None
    return {
        "cron": cron,
        "timezone": settings.sync_cron_timezone,
        "reconcile_interval": settings.reconcile_interval_seconds,
        "project_dir": str(find_project().root),
    }
