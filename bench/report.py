"""The shared result model: rows of one table, printed and written as JSON and Markdown."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine


class BenchError(Exception):
    """A correctness check failed while measuring: the numbers of that run mean nothing."""


def check(condition: bool, message: str) -> None:
    """Fail loudly (also under ``python -O``, unlike assert)."""
    if not condition:
        raise BenchError(message)


@dataclass
class Row:
    """One line of the table. ``ratio`` is compared with ``target`` (≤ or ≥, per ``better``)."""

    key: str
    what: str
    result: str
    reference: str = ""
    ratio: float | None = None
    target: float | None = None
    better: str = "lower"  # "lower": ratio ≤ target meets it; "higher": ratio ≥ target
    unit: str = "x"  # "x" for ratios; "ms" for an absolute latency; any other word for a count
    status: str = ""  # met / MISSED / info / FAILED
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status:
            return
        if self.ratio is None or self.target is None:
            self.status = "info"
        elif self.better == "lower":
            self.status = "met" if self.ratio <= self.target else "MISSED"
        else:
            self.status = "met" if self.ratio >= self.target else "MISSED"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return ""
        sign = "≤" if self.better == "lower" else "≥"
        if self.unit == "x":
            return f"{sign} {self.target:g}x"
        return f"{sign} {self.target:g} {self.unit}"

    @property
    def ratio_text(self) -> str:
        if self.ratio is None:
            return ""
        if self.unit == "x":
            return f"{self.ratio:.2f}x"
        return fmt_ms(self.ratio) if self.unit == "ms" else f"{self.ratio:g} {self.unit}"


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(admin_url: URL) -> dict[str, Any]:
    engine = make_engine(admin_url)
    try:
        with engine.connect() as conn:
            pg = {
                name: conn.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("server_version", "fsync", "synchronous_commit", "max_connections")
            }
    finally:
        engine.dispose()
    load = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "postgresql": str(pg["server_version"]).split()[0],
        "postgresql_settings": {k: v for k, v in pg.items() if k != "server_version"},
        "prefect": _version("prefect"),
        "sqlalchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "libpq": str(psycopg.pq.version()),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


HEADER = ("#", "measurement", "result", "reference", "compared", "target", "status")


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.key,
        row.what,
        row.result,
        row.reference,
        row.ratio_text,
        row.target_text,
        row.status,
    )


def render_text(rows: list[Row], env: dict[str, Any]) -> str:
    table = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    out = [env_line(env), ""]
    for i, line in enumerate(table):
        out.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"{r.key}: {r.note}" for r in rows if r.note]
    if notes:
        out += ["", *notes]
    return "\n".join(out)


def env_line(env: dict[str, Any]) -> str:
    return (
        f"{env['cpu_count']} CPUs (load {env['load_average_at_start'][0]}), "
        f"PostgreSQL {env['postgresql']} on loopback, Prefect {env['prefect']}, "
        f"SQLAlchemy {env['sqlalchemy']}, psycopg {env['psycopg']} (libpq {env['libpq']}), "
        f"SQLite {env['sqlite']}, Python {env['python']}"
    )


def render_markdown(rows: list[Row], env: dict[str, Any]) -> str:
    out = [
        f"Measured {env['date']}: {env_line(env)}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    notes = [f"- **{r.key}**: {r.note}" for r in rows if r.note]
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def write(rows: list[Row], env: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    as_json = directory / "latest.json"
    as_md = directory / "latest.md"
    payload = {"environment": env, "rows": [asdict(r) for r in rows]}
    as_json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    as_md.write_text(render_markdown(rows, env))
    return as_json, as_md
