"""Background jobs on Prefect that never run twice at once: the public API.

``background_job`` and ``BackgroundJob`` are loaded on first use: ``import jobs`` (the lock, the
settings) never imports Prefect.
"""

from typing import TYPE_CHECKING, Any

from jobs.context import JobContext
from jobs.errors import (
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
from jobs.job_types import JobType
from jobs.lease import Execution, Finish, FinishOutcome, Lease, LockPolicy
from jobs.lock import (
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
from jobs.models import JobExecution, Status
from jobs.outcome import JobOutcome, NightlyReport, SkipKind
from jobs.reaper import Reaped, sweep

if TYPE_CHECKING:
    from jobs.task import BackgroundJob, background_job

_PREFECT_LEVEL = {"BackgroundJob", "background_job"}


def __getattr__(name: str) -> Any:
    if name in _PREFECT_LEVEL:
        from jobs import task  # noqa: PLC0415 - deferred so the lock stays usable without Prefect

        return getattr(task, name)
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")


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
    "JobType",
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
    "SkipKind",
    "Status",
    "acquire_job_lock",
    "already_succeeded_for_period",
    "background_job",
    "record_outcome",
    "sweep",
]
