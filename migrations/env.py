"""Alembic environment for the job tables.

The plugin keeps its own version table (``jobs_alembic_version``) and only ever looks at its own
tables, so it lives beside the host application's migrations in the same database.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from jobs.schema import VERSION_TABLE, include_name, target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Any = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from jobs.database import engine_from_settings
    from jobs.settings import load_settings

    engine = engine_from_settings(load_settings())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
