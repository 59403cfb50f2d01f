"""`jobctl new`: scaffold a job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefect_nightly_jobs.scaffold import create_job


def new(
    name: Annotated[
        str, typer.Argument(help="The job type: a lowercase identifier, e.g. sync_users.")
    ],
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on",
            "-d",
            metavar="A,B",
            help="Jobs that must run (and not fail) before this one: comma-separated, or the "
            "option repeated.",
            show_default=False,
        ),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help="One line shown by `jobctl list`.", show_default=False),
    ] = None,
    once_per_period: Annotated[
        bool,
        typer.Option(
            "--once-per-period",
            help="Skip the job when it already succeeded for the run's period.",
        ),
    ] = False,
) -> None:
    """Add a job: its module in the jobs package and its test, in one step. Adds files only.

    Run it anywhere inside the project (the directory of its pyproject.toml; `jobctl init` makes
    one). Writes JOBS/NAME.py (the job, with a marked place for your logic; JOBS is the jobs
    package, [tool.prefect-nightly-jobs] jobs, default jobs/) and tests/test_NAME.py (runs the job
    through Prefect on a fresh database and expects SUCCESS), plus `tests/__init__.py` if missing.
    The plugin discovers the job: nothing is registered, no migration is needed. A bad name, a
    job type that exists, an unknown or cyclic --depends-on, a file in the way or any write error
    changes nothing (exit 6).
    """
    job = create_job(
        Path.cwd(),
        name,
        depends_on=",".join(depends_on) if depends_on else None,
        description=description,
        once_per_period=once_per_period,
    )
    project = job.project
    typer.echo(f"created job {job.name!r} in {project.root}:")
    width = max(len(path) for path, _ in job.files)
    for path, note in job.files:
        typer.echo(f"  created  {path:<{width}}  {note}".rstrip())
    models = project.relative(project.jobs_dir / "models.py")
    typer.echo(
        "no migration: a new job type needs no database entry.\n"
        f"  If the job needs tables of its own: add models to {models}, "
        f'then\n  alembic revision --autogenerate -m "{name} tables" && alembic upgrade head'
    )
    steps = [
        (f"$EDITOR {job.module}", "write the logic between the markers"),
        (f"pytest {job.test}", "its test (SQLite; PostgreSQL too with TEST_DATABASE_URL)"),
        ("jobctl list", "where it runs in the order"),
        (f"jobctl run {name}", "run it once now (through Prefect, with the lock)"),
        ("jobctl nightly", "run every job, in dependency order"),
    ]
    width = max(len(command) for command, _ in steps)
    typer.echo("next:")
    for command, why in steps:
        typer.echo(f"  {command:<{width}}  # {why}")
