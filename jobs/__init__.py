"""Background jobs on Prefect that never run twice at once: the public API."""

from jobs.errors import (
    ConfigurationError,
    DatabaseError,
    DependencyError,
    JobsError,
    LockError,
    LockLostError,
    MigrationsNotAppliedError,
    PreCheckError,
    ScaffoldError,
)
from jobs.lease import Execution, FinishOutcome, Lease, LockPolicy
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
from jobs.models import JobExecution, JobLock, Status

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "DependencyError",
    "Execution",
    "FinishOutcome",
    "JobExecution",
    "JobLock",
    "JobsError",
    "Lease",
    "LockAcquired",
    "LockError",
    "LockLostError",
    "LockNotAcquired",
    "LockPolicy",
    "LockResult",
    "MigrationsNotAppliedError",
    "Origin",
    "PreCheck",
    "PreCheckContext",
    "PreCheckError",
    "ScaffoldError",
    "Status",
    "acquire_job_lock",
    "already_succeeded_for_period",
    "record_outcome",
]
