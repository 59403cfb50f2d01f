"""`jobctl init`: write the layout of an application that uses the plugin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from prefect_nightly_jobs.scaffold import Layout, create_layout, plan_layout


def _list(layout: Layout) -> None:
    width = max(len(path) for path, _ in layout.files)
    for path, note in layout.files:
        typer.echo(f"  {path:<{width}}  {note}".rstrip())


def _next_steps(layout: Layout) -> None:
    steps: list[tuple[str, str]] = []
    here = Path.cwd().resolve()
    if layout.root != here:
        shown = os.path.relpath(layout.root, here) if layout.root.is_relative_to(here) else None
        steps.append((f"cd {shown or layout.root}", "run the commands below in the project"))
    if layout.wrote_pyproject:
        steps.append(("pip install -e '.[dev]'", "the plugin, pytest, mypy and ruff"))
    steps += [
        ("jobctl new my_job", "add a job: its module and its test"),
        ("jobctl db upgrade", "the plugin's table (job_execution)"),
        ("alembic upgrade head", "this project's own tables (migrations/)"),
        ("jobctl nightly", "run every job once, now, in dependency order"),
        ("pytest", "the jobs' tests (SQLite; PostgreSQL too with TEST_DATABASE_URL)"),
    ]
    width = max(len(command) for command, _ in steps)
    typer.echo("next:")
    for command, why in steps:
        typer.echo(f"  {command:<{width}}  # {why}")
    if not layout.wrote_pyproject:
        typer.echo(
            "pyproject.toml was kept: make sure the project depends on prefect-nightly-jobs "
            f"(its jobs package: {layout.package})."
        )


def init(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="The project directory (created if missing). Default: the current directory.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the files it would write, and write nothing."),
    ] = False,
) -> None:
    """Write the layout of an application that uses the plugin, in a new or existing project.

    Files: pyproject.toml (only if there is none: depends on prefect-nightly-jobs, names the jobs
    package, configures pytest, mypy and ruff), the jobs package with models.py (the app's own
    tables), flows/nightly.py (the deployment's entrypoint), alembic.ini and migrations/ (the
    app's own Alembic history; DATABASE_URL is the database), prefect.yaml (the nightly
    deployment), tests/, and .gitignore (only if there is none). The jobs package follows
    [tool.prefect-nightly-jobs] jobs of an existing pyproject.toml. Never overwrites: if any of
    these files exists, nothing is written (exit 6).
    """
    target = directory if directory is not None else Path.cwd()
    if dry_run:
        layout = plan_layout(target)
        typer.echo(f"jobctl init would create in {layout.root} (--dry-run: nothing written):")
        _list(layout)
        return
    layout = create_layout(target)
    typer.echo(f"created the layout of a nightly-jobs project in {layout.root}:")
    _list(layout)
    _next_steps(layout)
