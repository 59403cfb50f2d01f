"""`jobctl db`: the plugin's own migrations (its table and its version table), without alembic.ini.

The project's own tables have their own Alembic history (`alembic upgrade head` in the project).
"""

from __future__ import annotations

import typer

from prefect_nightly_jobs import schema
from prefect_nightly_jobs.database import engine_from_settings
from prefect_nightly_jobs.settings import load_settings

app = typer.Typer(
    help="The plugin's own migrations (table job_execution, version table "
    f"{schema.VERSION_TABLE}); the project's tables have their own Alembic history.",
    no_args_is_help=True,
)


@app.command("upgrade")
def upgrade() -> None:
    """Migrate the plugin's table to the latest version (DATABASE_URL), idempotently."""
    settings = load_settings()
    engine = engine_from_settings(settings)
    try:
        before = schema.current_revisions(engine)
        schema.upgrade(engine)
        after = schema.current_revisions(engine)
    finally:
        engine.dispose()
    where = settings.masked_database_url
    if before == after:
        typer.echo(f"already at head ({', '.join(sorted(after))}) in {where}")
    else:
        was = ", ".join(sorted(before)) or "empty"
        typer.echo(f"upgraded {where}: {was} -> {', '.join(sorted(after))}")


@app.command("current")
def current() -> None:
    """Show the plugin's migration version in DATABASE_URL, and whether it is the latest."""
    settings = load_settings()
    engine = engine_from_settings(settings)
    try:
        now = schema.current_revisions(engine)
    finally:
        engine.dispose()
    heads = schema.head_revisions()
    state = "at head" if now == heads else f"behind (head: {', '.join(sorted(heads))})"
    typer.echo(f"{', '.join(sorted(now)) or 'none'} ({state})")
    if now != heads:
        raise typer.Exit(1)
