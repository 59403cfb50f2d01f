"""What every command needs first: validated settings, the job catalog, and the database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from prefect_nightly_jobs import schema
from prefect_nightly_jobs.database import engine_from_settings, normalize_url
from prefect_nightly_jobs.errors import ConfigurationError, JobsError
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.settings import Settings, load_settings, validate_enabled_flags

DEBUG_ENV = "JOBCTL_DEBUG"


def load_registry() -> Registry:
    """The project's jobs (every module of its jobs package, see ``catalog``); importing them needs
    no database.

    A job module that does not import (a typo in a job being written) is a one-line
    ConfigurationError naming it, unless JOBCTL_DEBUG asks for the traceback.
    """
    try:
        # Imported on use: the catalog pulls in Prefect, which `new` and `--help` never need.
        from prefect_nightly_jobs.catalog import registry  # noqa: PLC0415

        return registry()
    except JobsError:
        raise
    except Exception as err:
        if os.environ.get(DEBUG_ENV):
            raise
        raise ConfigurationError(
            f"the job catalog does not import: {type(err).__name__}: {err} "
            f"(fix that job module; {DEBUG_ENV}=1 shows the traceback)"
        ) from err


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    registry: Registry


def load_runtime() -> Runtime:
    """Settings and enable flags validated, before anything else happens (one line if not)."""
    settings = load_settings()
    normalize_url(settings.database_url.get_secret_value())  # a malformed URL is reported first
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
