"""The application's jobs: every ``@background_job`` defined in the modules of its jobs package.

Jobs are discovered, not listed: adding a job is adding a module. Modules are imported in name
order and jobs taken in definition order, which is the registration order that breaks ties in the
nightly order. Importing a job module defines Prefect tasks but connects to nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.project import Project, find_project
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.task import BackgroundJob


def _import(name: str, root: str) -> ModuleType:
    if root not in sys.path:
        sys.path.insert(0, root)  # the application is a project directory, not an install
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and name.startswith(err.name):
            raise ConfigurationError(
                f"the jobs package {name!r} is not found in {root}: run `jobctl init` there, or "
                "set [tool.prefect-nightly-jobs] jobs in pyproject.toml"
            ) from None
        raise


def discover(project: Project | None = None) -> list[BackgroundJob]:
    """Every job of the project's jobs package, in registration order."""
    project = project or find_project()
    package = _import(project.package, str(project.root))
    modules = [package]
    for info in sorted(
        pkgutil.iter_modules(getattr(package, "__path__", [])), key=lambda info: info.name
    ):
        modules.append(_import(f"{project.package}.{info.name}", str(project.root)))
    found: list[BackgroundJob] = []
    for module in modules:
        for value in vars(module).values():
            # A job imported into another module is found where it is defined, once.
            if isinstance(value, BackgroundJob) and value.fn.__module__ == module.__name__:
                found.append(value)
    return found


def registry(project: Project | None = None) -> Registry:
    return Registry(job.spec for job in discover(project))


def job(job_type: str, project: Project | None = None) -> BackgroundJob:
    """The job of that type; unknown names raise DependencyError listing the known ones."""
    jobs = discover(project)
    Registry(j.spec for j in jobs).get(job_type)
    return next(j for j in jobs if j.job_type == job_type)
