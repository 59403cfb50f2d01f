"""Where the application is: its root, its jobs package and its Alembic file, from configuration.

The library never imports the application by a fixed name. It reads ``[tool.prefect-nightly-jobs]``
from the ``pyproject.toml`` of the current directory (or the nearest parent that has one):

    [tool.prefect-nightly-jobs]
    jobs = "jobs"              # the package holding one module per job (the default)
    alembic_ini = "alembic.ini"  # the application's own migrations (the default, if present)

``NIGHTLY_JOBS_PACKAGE`` overrides ``jobs`` (tests, one-off runs).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from prefect_nightly_jobs.errors import ConfigurationError

TOOL = "prefect-nightly-jobs"
PACKAGE_ENV = "NIGHTLY_JOBS_PACKAGE"
DEFAULT_PACKAGE = "jobs"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Project:
    """An application that uses the plugin."""

    root: Path
    package: str
    alembic_ini: Path | None

    @property
    def jobs_dir(self) -> Path:
        return self.root.joinpath(*self.package.split("."))


def _pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def find_project(start: Path | None = None) -> Project:
    """The project around ``start`` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    pyproject = _pyproject(here)
    table: dict[str, object] = {}
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigurationError(f"{pyproject} is not valid TOML: {err}") from None
        table = data.get("tool", {}).get(TOOL, {})
    root = pyproject.parent if pyproject is not None else here
    package = os.environ.get(PACKAGE_ENV, "").strip() or str(table.get("jobs", DEFAULT_PACKAGE))
    if not _DOTTED.fullmatch(package):
        raise ConfigurationError(
            f"the jobs package {package!r} ([tool.{TOOL}] jobs or {PACKAGE_ENV}) is not a "
            "dotted Python name: use e.g. 'jobs' or 'myapp.jobs'"
        )
    alembic = root / str(table.get("alembic_ini", "alembic.ini"))
    return Project(root=root, package=package, alembic_ini=alembic if alembic.is_file() else None)
