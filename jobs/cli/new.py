"""`jobctl new`: scaffold a job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.scaffold import create_job


def new(
    name: Annotated[
        str, typer.Argument(help="The job type: a lowercase identifier, e.g. sync_users.")
    ],
    depends_on: Annotated[
        str | None,
        typer.Option(
            "--depends-on",
            "-d",
            metavar="A,B",
            help="Registered jobs that must run (and not fail) before this one, comma-separated.",
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
    """Add a job: its JobType member, its module, its registration and its test, in one step.

    Run it anywhere inside the project (the directory holding jobs/catalog/). Writes
    jobs/job_types.py (new member), jobs/catalog/NAME.py (the job, with a marked place for your
    logic), jobs/catalog/__init__.py (import and registration, last in the tie-break order) and
    tests/jobs/test_NAME.py (runs the job through Prefect on a real database and expects
    SUCCESS). No migration: a new job type needs no database entry. A bad name, an unknown or
    cyclic --depends-on, or any write error changes nothing (exit 6).
    """
    job = create_job(
        Path.cwd(),
        name,
        depends_on=depends_on,
        description=description,
        once_per_period=once_per_period,
    )
    typer.echo(f"created job {job.name!r} in {job.project.root}:")
    width = max(len(path) for _, path, _ in job.files)
    for action, path, note in job.files:
        typer.echo(f"  {action:<9}{path:<{width}}  {note}".rstrip())
    typer.echo(
        "no migration: a new job type needs no database entry.\n"
        "  If the job needs tables of its own: add models to jobs/app_models.py, "
        f'then\n  alembic revision --autogenerate -m "{name} tables" && alembic upgrade head'
    )
    steps = [
        (f"$EDITOR jobs/catalog/{name}.py", "write the logic between the markers"),
        (
            f"make pytest PYTEST_ARGS=tests/jobs/test_{name}.py",
            "its test, on PostgreSQL and SQLite",
        ),
        ("jobctl list", "where it runs in the order"),
        (f"jobctl run {name}", "run it once now (through Prefect, with the lock)"),
        ("jobctl nightly", "run every job, in dependency order"),
    ]
    width = max(len(command) for command, _ in steps)
    typer.echo("next:")
    for command, why in steps:
        typer.echo(f"  {command:<{width}}  # {why}")
