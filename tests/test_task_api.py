"""The public API (the lock without Prefect) and the discovery of a project's jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefect_nightly_jobs.catalog import discover, registry
from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.project import find_project
from tests import REPO_ROOT


def test_import_does_not_import_prefect() -> None:
    code = (
        "import sys, prefect_nightly_jobs\n"
        "assert 'prefect' not in sys.modules, 'importing the package imported Prefect'\n"
        "from prefect_nightly_jobs import acquire_job_lock, JobContext, JobOutcome, sweep\n"
        "assert 'prefect' not in sys.modules, 'the lock-level API imported Prefect'\n"
        "from prefect_nightly_jobs import background_job, BackgroundJob, nightly\n"
        "assert 'prefect' in sys.modules\n"
        "assert background_job.__module__ == 'prefect_nightly_jobs.task'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_reference_project_is_found_from_its_pyproject() -> None:
    project = find_project(REPO_ROOT / "jobs")
    assert (project.root, project.package) == (REPO_ROOT, "jobs")
    assert project.alembic_ini == REPO_ROOT / "alembic.ini"


def test_jobs_are_discovered_once_each_in_registration_order() -> None:
    project = find_project(REPO_ROOT)
    jobs = discover(project)
    # Modules in name order, jobs in definition order: the tie-break of the nightly order.
    assert [job.job_type for job in jobs] == ["daily_rollup", "import_events", "purge_expired"]
    assert [spec.job_type for spec in registry(project).ordered()] == [
        "import_events",
        "daily_rollup",
        "purge_expired",
    ]
    for job in jobs:
        assert job.spec.runner is job and job.task.name == job.job_type
        assert job.spec.description, f"{job.job_type} has no description for `jobctl list`"
    assert registry(project).get("daily_rollup").depends_on == ("import_events",)


def test_a_missing_jobs_package_is_one_line_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.prefect-nightly-jobs]\njobs = "nightly_jobs_nowhere"\n'
    )
    with pytest.raises(ConfigurationError) as raised:
        discover(find_project(tmp_path))
    assert "'nightly_jobs_nowhere' is not found in" in raised.value.message
    assert "jobctl init" in raised.value.message


def test_a_bad_package_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.prefect-nightly-jobs]\njobs = "my-jobs"\n')
    with pytest.raises(ConfigurationError, match="is not a dotted Python name"):
        find_project(tmp_path)
