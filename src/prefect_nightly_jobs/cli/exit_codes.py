"""Exit codes of `jobctl`, one per kind of problem, so scripts and CI can tell them apart."""

from __future__ import annotations

from enum import IntEnum

from prefect_nightly_jobs.errors import (
    ConfigurationError,
    DatabaseError,
    JobsError,
    LockError,
    ScaffoldError,
)


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a job failed (run, nightly) or a check failed (check)
    USAGE = 2  # bad command line (unknown option, missing argument)
    CONFIGURATION = 3  # settings, enable flags, unknown job, dependency cycle, bad --period
    DATABASE = 4  # database unreachable or not migrated
    LOCK = 5  # unlock: nothing running
    SCAFFOLD = 6  # new: refused, nothing written
    UNEXPECTED = 70  # a bug: the one line names it, JOBCTL_DEBUG=1 shows the traceback
    INTERRUPTED = 130


def exit_code_for(err: JobsError) -> ExitCode:
    for kind, code in (
        (ConfigurationError, ExitCode.CONFIGURATION),
        (DatabaseError, ExitCode.DATABASE),
        (LockError, ExitCode.LOCK),
        (ScaffoldError, ExitCode.SCAFFOLD),
    ):
        if isinstance(err, kind):
            return code
    return ExitCode.FAILED
