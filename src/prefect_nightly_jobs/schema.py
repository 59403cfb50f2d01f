"""The plugin's own migrations (package data, own version table): at head?, upgrade, downgrade.

They need no ``alembic.ini``: ``jobctl db upgrade`` runs them programmatically. A project with its
own Alembic environment may include them instead (see the README, "Migrations").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, exc

from prefect_nightly_jobs.database import translated_errors
from prefect_nightly_jobs.errors import MigrationsNotAppliedError
from prefect_nightly_jobs.models import Base

VERSION_TABLE = "nightly_jobs_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"


def target_metadata() -> MetaData:
    """Every table the plugin owns (``job_execution``), and nothing of the application's."""
    return Base.metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Autogenerate looks only at the plugin's tables, never at the host application's."""
    if type_ == "table":
        return name in target_metadata().tables
    return True


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_path_separator", "os")
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with translated_errors(engine.url), engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        heads = set(ctx.get_current_heads())
        conn.rollback()
        return heads


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with translated_errors(engine.url), engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with translated_errors(engine.url), engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()


def ensure_schema(engine: Engine) -> None:
    """SQLite (the embedded default) migrates itself; any other database must already be at head."""
    if engine.dialect.name == "sqlite":
        if current_revisions(engine) != head_revisions():
            upgrade(engine)
        return
    try:
        current = current_revisions(engine)
    except exc.ProgrammingError:
        current = set()
    if current != head_revisions():
        found = ", ".join(sorted(current)) or "none"
        raise MigrationsNotAppliedError(
            f"the job tables are not migrated (database at {found}, code expects "
            f"{', '.join(sorted(head_revisions()))}): run `jobctl db upgrade` "
            f"with DATABASE_URL set to {engine.url.render_as_string(hide_password=True)}"
        )
