"""`jobctl init`: the layout of an application that uses the plugin, written into a new or existing
project directory, all files or none, never over an existing file.

The application owns its jobs package (one module per job), its own tables (``models.py``) and
their Alembic history (``migrations/``, ``alembic.ini``), the deployment (``flows/nightly.py``,
``prefect.yaml``) and its tests. The plugin's own table has migrations of its own
(``jobctl db upgrade``). This repository's reference application is exactly this layout.
"""

from __future__ import annotations

import keyword
import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from string import Template

from prefect_nightly_jobs.errors import ScaffoldError
from prefect_nightly_jobs.project import DEFAULT_PACKAGE, TOOL
from prefect_nightly_jobs.scaffold.files import FileChange, apply_changes, first_taken, planned_file
from prefect_nightly_jobs.scaffold.templates import TESTS_PACKAGE

DISTRIBUTION = "prefect-nightly-jobs"
# The generated lines that name the package (the import in migrations/env.py) fit in 100 columns.
MAX_PACKAGE_LENGTH = 60

PYPROJECT = Template("""\
[project]
name = "$name"
version = "0.1.0"
description = "Nightly background jobs on Prefect, with prefect-nightly-jobs."
requires-python = ">=3.11"
dependencies = ["$requirement"]

[project.optional-dependencies]
dev = ["pytest>=8", "mypy>=1.10", "ruff>=0.5"]

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

# An application, not a library: `pip install -e '.[dev]'` installs its dependencies, and its code
# runs from this directory.
[tool.setuptools]
packages = []

[tool.prefect-nightly-jobs]
jobs = "jobs"  # the package holding one module per job

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"

[tool.mypy]
strict = true
python_version = "3.11"
files = ["jobs", "flows", "tests", "migrations/env.py"]

[tool.ruff]
line-length = 100
target-version = "py311"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]
""")

GITIGNORE = """\
# The default DATABASE_URL is the SQLite file jobs.sqlite3 (and its -wal, -shm, -leases).
*.sqlite3
*.sqlite3-*
.venv/
"""

JOBS_INIT = '''\
"""This project's jobs: one module per job, each a function decorated with ``@background_job``.

The plugin discovers them ([tool.prefect-nightly-jobs] in pyproject.toml names this package):
adding a job is adding a module (`jobctl new NAME`).
"""
'''

MODELS = '''\
"""This application's own tables: SQLAlchemy models on ``Base``.

Their migrations are in migrations/: after changing a model, run
`alembic revision --autogenerate -m "what changed"`, review the new file, then
`alembic upgrade head`. The plugin's table (job_execution) has migrations of its own
(`jobctl db upgrade`). For timestamps, use ``prefect_nightly_jobs.UTCDateTime`` columns and
``prefect_nightly_jobs.db_now()`` (the database's clock).
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Constraint and index names that are the same on every database, so migrations can name them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
'''

PACKAGE_INIT = Template('''\
"""The $package package."""
''')

FLOWS_INIT = '''\
"""This project's Prefect flows: the deployment entrypoints of prefect.yaml."""
'''

FLOWS_RECONCILE = '''\
"""The reconcile deployment's entrypoint (prefect.yaml): the plugin's flow that ends dead job
runs in the database and sets their Prefect runs Crashed, on a frequent schedule."""

from prefect_nightly_jobs import reconcile

__all__ = ["reconcile"]
'''

FLOWS_NIGHTLY = '''\
"""The nightly deployment's entrypoint (prefect.yaml): the plugin's flow, which runs every job of
this project's jobs package ([tool.prefect-nightly-jobs] in pyproject.toml) in dependency order;
and the flow of the per-job deployments it starts when JOB_DISPATCH=deployments."""

from prefect_nightly_jobs import nightly, nightly_job

__all__ = ["nightly", "nightly_job"]
'''

ALEMBIC_INI = """\
# Alembic configuration for this project's own tables (migrations/). The database URL comes from
# DATABASE_URL (see migrations/env.py), never from this file. The plugin's table has its own
# migrations: `jobctl db upgrade`.
[alembic]
script_location = %(here)s/migrations
prepend_sys_path = .
path_separator = os

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

MIGRATIONS_ENV = Template('''\
"""Alembic environment for this application's own tables: the models on ``Base``.

The plugin's table (job_execution, with its version table nightly_jobs_alembic_version) has
migrations of its own (`jobctl db upgrade`): autogenerate compares only the tables of
``Base.metadata`` and never proposes to drop the plugin's. The database is DATABASE_URL (the
plugin's settings, .env included), or the connection the plugin's pytest fixtures hand over;
alembic.ini holds no URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, exc

from $package.models import Base

target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Tables found in the database that are not this application's are left alone."""
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # the plugin's pytest fixtures migrate a test database this way
        _run(connection)
        return
    # Run from the `alembic` command line: log like alembic does, and answer bad settings or an
    # unreachable database with one line instead of a traceback.
    from logging.config import fileConfig

    from prefect_nightly_jobs import JobsError, engine_from_settings, load_settings

    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    try:
        engine = engine_from_settings(load_settings())
    except JobsError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        try:
            conn = engine.connect()
        except exc.OperationalError as err:
            where = engine.url.render_as_string(hide_password=True)
            reason = (str(err.orig or err).strip().splitlines() or ["no reason given"])[0]
            raise SystemExit(
                f"error: database unavailable at {where}: {reason} "
                "(check DATABASE_URL and that the server is running)"
            ) from None
        with conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
''')

SCRIPT_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

PREFECT_YAML = Template("""\
# The nightly deployment. From this directory, with the project's virtualenv active:
#   prefect work-pool create nightly-pool --type process
#   prefect deploy --all
# The build step validates SYNC_CRON_SCHEDULE (default "0 0 * * *"), SYNC_CRON_TIMEZONE
# (default UTC) and RECONCILE_INTERVAL_SECONDS (default 60): an invalid value stops the deploy
# with one line instead of reaching the server.
name: $name
prefect-version: $prefect_version

build:
  - prefect_nightly_jobs.deployment.deployment_settings:
      id: settings

push: null

# A process worker starts each flow run in the project directory (resolved at deploy time).
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ settings.project_dir }}"

deployments:
  - name: jobs
    entrypoint: flows/nightly.py:nightly
    description: Every job of this project once per night, in dependency order, with the lock.
    tags: [nightly-jobs]
    parameters: {}
    schedules:
      - cron: "{{ settings.cron }}"
        timezone: "{{ settings.timezone }}"
        active: true
    # Never two nightly runs at once: a run that would overlap is cancelled, not queued.
    concurrency_limit:
      limit: 1
      collision_strategy: CANCEL_NEW
    work_pool:
      name: nightly-pool
      job_variables:
        env:
          # Lock warnings (a reaped execution, a failing heartbeat) reach the Prefect UI too.
          PREFECT_LOGGING_EXTRA_LOGGERS: prefect_nightly_jobs
  # Ends dead job runs in the database and in Prefect without waiting for the next nightly run:
  # a crashed job shows RUNNING / Running for at most STALE_JOB_THRESHOLD_MS plus this interval
  # (RECONCILE_INTERVAL_SECONDS, default 60) plus a worker's start-up time.
  - name: reconcile
    entrypoint: flows/reconcile.py:reconcile
    description: Dead job runs ended in the database, and their Prefect runs set Crashed.
    tags: [nightly-jobs]
    parameters: {}
    schedules:
      # Every RECONCILE_INTERVAL_SECONDS (an rrule: prefect.yaml cannot template an interval).
      - rrule: "FREQ=SECONDLY;INTERVAL={{ settings.reconcile_interval }}"
        active: true
    # No concurrency limit: two sweeps at once are harmless, and a sweep killed with its worker
    # would otherwise hold the only slot and block every later one.
    work_pool:
      name: nightly-pool
      job_variables:
        env:
          PREFECT_LOGGING_EXTRA_LOGGERS: prefect_nightly_jobs
""")


@dataclass(frozen=True)
class Layout:
    root: Path
    package: str
    changes: list[FileChange]
    notes: dict[Path, str]
    wrote_pyproject: bool

    @property
    def files(self) -> list[tuple[str, str]]:
        """(path relative to the root, what it is for), in writing order."""
        return [(self.relative(c.path), self.notes.get(c.path, "")) for c in self.changes]

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def project_name(root: Path) -> str:
    """The distribution name of a new project: its directory's name, normalized (PEP 503)."""
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-") or "nightly-jobs-app"
    return f"{name}-app" if name == DISTRIBUTION else name  # never a dependency of itself


def _check_package(package: object, where: str) -> str:
    if not isinstance(package, str) or not package:
        raise ScaffoldError(f"{where}: [tool.{TOOL}] jobs must be a package name such as 'jobs'")
    parts = package.split(".")
    if any(not p.isidentifier() or keyword.iskeyword(p) for p in parts):
        raise ScaffoldError(
            f"{where}: [tool.{TOOL}] jobs = {package[:80]!r} is not a dotted Python name: "
            "use e.g. 'jobs' or 'myapp.jobs'"
        )
    if len(package) > MAX_PACKAGE_LENGTH:
        raise ScaffoldError(
            f"{where}: [tool.{TOOL}] jobs is {len(package)} characters long: "
            f"use at most {MAX_PACKAGE_LENGTH}"
        )
    return package


def configured_package(root: Path) -> str:
    """The jobs package named by ``root/pyproject.toml`` ([tool.prefect-nightly-jobs] jobs), or
    the default when there is no such file or setting."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return DEFAULT_PACKAGE
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ScaffoldError(f"pyproject.toml is not valid TOML ({err}): fix it first") from None
    table = data.get("tool", {}).get(TOOL, {})
    if not isinstance(table, dict):
        raise ScaffoldError(f"pyproject.toml: [tool.{TOOL}] must be a table: fix it first")
    ini = table.get("alembic_ini", "alembic.ini")
    if ini != "alembic.ini":
        raise ScaffoldError(
            f"pyproject.toml: [tool.{TOOL}] alembic_ini = {str(ini)[:80]!r}, but `jobctl init` "
            "writes alembic.ini: remove that setting first"
        )
    return _check_package(table.get("jobs", DEFAULT_PACKAGE), "pyproject.toml")


def plan_layout(directory: Path) -> Layout:
    """Validate and compute every file of the layout; writes nothing."""
    root = directory.resolve()
    if root.exists() and not root.is_dir():
        raise ScaffoldError(f"{root} exists and is not a directory: give a directory")
    has_pyproject = (root / "pyproject.toml").exists() or (root / "pyproject.toml").is_symlink()
    package = configured_package(root)
    jobs_dir = root.joinpath(*package.split("."))
    models = jobs_dir / "models.py"
    name = project_name(root)
    version = _version(DISTRIBUTION)
    requirement = f"{DISTRIBUTION}>={version}" if version else DISTRIBUTION

    planned: list[tuple[Path, str, str]] = []
    if not has_pyproject:
        planned.append(
            (
                root / "pyproject.toml",
                PYPROJECT.substitute(name=name, requirement=requirement),
                f"the project: depends on {DISTRIBUTION}, names the jobs package, pytest, "
                "mypy, ruff",
            )
        )
    if not ((root / ".gitignore").exists() or (root / ".gitignore").is_symlink()):
        planned.append((root / ".gitignore", GITIGNORE, "the SQLite database files, .venv/"))
    # The parents of a dotted jobs package (myapp in myapp.jobs) become packages if they are not.
    parts = package.split(".")
    for depth in range(1, len(parts)):
        init = root.joinpath(*parts[:depth], "__init__.py")
        if not (init.exists() or init.is_symlink()):
            dotted = ".".join(parts[:depth])
            planned.append((init, PACKAGE_INIT.substitute(package=dotted), "makes it a package"))
    relative_models = models.relative_to(root).as_posix()
    planned += [
        (
            jobs_dir / "__init__.py",
            JOBS_INIT,
            "the jobs package: one module per job (`jobctl new NAME` adds one)",
        ),
        (models, MODELS, "this application's own tables: SQLAlchemy models on Base"),
        (root / "flows" / "__init__.py", FLOWS_INIT, "the deployment's flows"),
        (
            root / "flows" / "nightly.py",
            FLOWS_NIGHTLY,
            "the deployment's entrypoint: the plugin's nightly flow",
        ),
        (
            root / "flows" / "reconcile.py",
            FLOWS_RECONCILE,
            "the reconcile deployment's entrypoint: dead runs ended in both systems",
        ),
        (
            root / "alembic.ini",
            ALEMBIC_INI,
            "Alembic for this application's tables (the URL is DATABASE_URL)",
        ),
        (
            root / "migrations" / "env.py",
            MIGRATIONS_ENV.substitute(package=package),
            f"migrates the tables of {relative_models}, leaves the plugin's alone",
        ),
        (root / "migrations" / "script.py.mako", SCRIPT_MAKO, "the template of a new migration"),
        (root / "migrations" / "versions" / ".gitkeep", "", "where the migrations go"),
        (
            root / "prefect.yaml",
            PREFECT_YAML.substitute(name=name, prefect_version=_version("prefect") or "3"),
            "the nightly deployment (`prefect deploy --all`)",
        ),
        (root / "tests" / "__init__.py", TESTS_PACKAGE, "the tests: one module per job"),
    ]
    taken = first_taken([path for path, _, _ in planned])
    if taken is not None:
        path, why = taken
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        raise ScaffoldError(
            f"{shown} {why}: `jobctl init` never overwrites a file, so nothing was written "
            "(move it away, or add the rest of the layout by hand)"
        )
    return Layout(
        root=root,
        package=package,
        changes=[planned_file(path, text) for path, text, _ in planned],
        notes={path: note for path, _, note in planned},
        wrote_pyproject=not has_pyproject,
    )


def create_layout(directory: Path) -> Layout:
    """Plan, then write every file or none."""
    layout = plan_layout(directory)
    apply_changes(layout.changes)
    return layout
