"""What every command needs first: validated settings, the job catalog, and the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from jobs import schema
from jobs.database import engine_from_settings
from jobs.registry import Registry
from jobs.settings import Settings, load_settings, validate_enabled_flags


def load_registry() -> Registry:
    """The registered jobs (``jobs/catalog/__init__.py``); importing it needs no database."""
    # Imported on use: the catalog pulls in Prefect, which `jobctl new` and `--help` never need.
    from jobs.catalog import registry  # noqa: PLC0415

    return registry()


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    registry: Registry


def load_runtime() -> Runtime:
    """Settings and enable flags validated, before anything else happens (one line if not)."""
    settings = load_settings()
    registry = load_registry()
    validate_enabled_flags(spec.job_type for spec in registry)
    return Runtime(settings=settings, registry=registry)


@contextmanager
def open_database(settings: Settings) -> Iterator[Engine]:
    """An engine on the app database at the latest migration (the embedded SQLite migrates
    itself; another database that is behind is a one-line MigrationsNotAppliedError)."""
    engine = engine_from_settings(settings)
    try:
        schema.ensure_schema(engine)
        yield engine
    finally:
        engine.dispose()
