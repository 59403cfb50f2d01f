"""prefect-nightly-jobs: background jobs on Prefect that never run twice at once. The public API.

The Prefect-level names (``background_job``, ``BackgroundJob``, ``nightly``, ``nightly_job``,
``run_nightly``, ``run_job``) are loaded on first use: importing the package (the lock, the
settings) never imports Prefect.
"""

import importlib
from typing import TYPE_CHECKING, Any

from prefect_nightly_jobs.clock import UTCDateTime, db_now
from prefect_nightly_jobs.context import JobContext
from prefect_nightly_jobs.database import engine_from_settings, make_engine
from prefect_nightly_jobs.errors import (
    ConfigurationError,
    DatabaseError,
    DependencyError,
    FinalStatusNotRecordedError,
    JobsError,
    LockError,
    LockLostError,
    MigrationsNotAppliedError,
    PreCheckError,
    ScaffoldError,
)
from prefect_nightly_jobs.lease import Execution, Finish, FinishOutcome, Lease, LockPolicy
from prefect_nightly_jobs.lock import (
    LockAcquired,
    LockNotAcquired,
    LockResult,
    Origin,
    PreCheck,
    PreCheckContext,
    acquire_job_lock,
    already_succeeded_for_period,
    record_outcome,
)
from prefect_nightly_jobs.models import JobExecution, Status
from prefect_nightly_jobs.outcome import JobOutcome, NightlyReport, SkipKind
from prefect_nightly_jobs.reaper import Reaped, sweep
from prefect_nightly_jobs.settings import Settings, load_settings

if TYPE_CHECKING:
    from prefect_nightly_jobs.nightly_flow import nightly, run_job, run_nightly
    from prefect_nightly_jobs.reconciliation import reconcile
    from prefect_nightly_jobs.scaleout import nightly_job
    from prefect_nightly_jobs.task import BackgroundJob, background_job

# name -> the module that defines it, imported on first use (it imports Prefect)
_PREFECT_LEVEL = {
    "BackgroundJob": "prefect_nightly_jobs.task",
    "background_job": "prefect_nightly_jobs.task",
    "nightly": "prefect_nightly_jobs.nightly_flow",
    "nightly_job": "prefect_nightly_jobs.scaleout",
    "run_job": "prefect_nightly_jobs.nightly_flow",
    "run_nightly": "prefect_nightly_jobs.nightly_flow",
    "reconcile": "prefect_nightly_jobs.reconciliation",
}


def __getattr__(name: str) -> Any:
    if name in _PREFECT_LEVEL:
        return getattr(importlib.import_module(_PREFECT_LEVEL[name]), name)
    raise AttributeError(f"module 'prefect_nightly_jobs' has no attribute {name!r}")


__all__ = [
    "BackgroundJob",
    "ConfigurationError",
    "DatabaseError",
    "DependencyError",
    "Execution",
    "FinalStatusNotRecordedError",
    "Finish",
    "FinishOutcome",
    "JobContext",
    "JobExecution",
    "JobOutcome",
    "JobsError",
    "Lease",
    "LockAcquired",
    "LockError",
    "LockLostError",
    "LockNotAcquired",
    "LockPolicy",
    "LockResult",
    "MigrationsNotAppliedError",
    "NightlyReport",
    "Origin",
    "PreCheck",
    "PreCheckContext",
    "PreCheckError",
    "Reaped",
    "ScaffoldError",
    "Settings",
    "SkipKind",
    "Status",
    "UTCDateTime",
    "acquire_job_lock",
    "already_succeeded_for_period",
    "background_job",
    "db_now",
    "engine_from_settings",
    "load_settings",
    "make_engine",
    "nightly",
    "nightly_job",
    "reconcile",
    "record_outcome",
    "run_job",
    "run_nightly",
    "sweep",
]
