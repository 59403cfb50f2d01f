"""The job layer's public API: importable from ``jobs`` without Prefect for the lock."""

from __future__ import annotations

import subprocess
import sys

from jobs.catalog import JOBS, registry
from jobs.job_types import JobType


def test_import_jobs_does_not_import_prefect() -> None:
    code = (
        "import sys, jobs\n"
        "assert 'prefect' not in sys.modules, 'import jobs imported Prefect'\n"
        "from jobs import acquire_job_lock, JobContext, JobOutcome, JobType\n"
        "assert 'prefect' not in sys.modules, 'the lock-level API imported Prefect'\n"
        "from jobs import background_job, BackgroundJob\n"
        "assert 'prefect' in sys.modules and background_job.__module__ == 'jobs.task'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_catalog_registers_every_job_type_once_in_order() -> None:
    assert [job.job_type for job in JOBS] == [t.value for t in JobType]
    assert [spec.job_type for spec in registry().ordered()] == [
        "import_events",
        "daily_rollup",
        "purge_expired",
    ]
    for job in JOBS:
        assert job.spec.runner is job and job.task.name == job.job_type
        assert job.spec.description, f"{job.job_type} has no description for `jobctl list`"
    assert registry().get("daily_rollup").depends_on == ("import_events",)


def test_job_type_marker_is_the_last_line_of_the_enum() -> None:
    import inspect

    from jobs import job_types

    source = inspect.getsource(job_types.JobType).rstrip().splitlines()
    assert source[-1] == "    # <jobctl:job-types>"
