"""The project's exceptions: one root, one subclass per kind of failure.

Each class docstring is its default message, so ``raise LockLostError()`` already explains itself.
Messages are one line that names the problem and the fix; they never contain a password.
"""

from __future__ import annotations


class JobsError(Exception):
    """A background-job error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigurationError(JobsError):
    """Invalid configuration: fix the environment variable named in the message."""


class DatabaseError(JobsError):
    """The application database could not be used: check DATABASE_URL and that the server is up."""


class MigrationsNotAppliedError(DatabaseError):
    """The plugin's table is not at the latest migration: run `jobctl db upgrade`."""


class LockError(JobsError):
    """The job lock could not be used as asked."""


class LockLostError(LockError):
    """lock lost: the execution row was reaped or released while the job was running."""


class FinalStatusNotRecordedError(LockError):
    """The final status could not be written (database unreachable): the row will be reaped."""


class PreCheckError(LockError):
    """The job's pre-check raised: the execution is recorded as FAILURE."""

    def __init__(self, message: str, execution_id: int) -> None:
        super().__init__(message)
        self.execution_id = execution_id


class DependencyError(ConfigurationError):
    """The job dependency graph is invalid (cycle or unknown job)."""


class ScaffoldError(JobsError):
    """`jobctl new` or `jobctl init` refused to write anything."""
