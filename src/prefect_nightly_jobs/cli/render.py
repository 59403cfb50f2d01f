"""How `jobctl` shows things: rich tables for people, plain JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from prefect_nightly_jobs.checks import CheckResult
from prefect_nightly_jobs.executions import ExecutionRecord, StatusReport
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.registry import JobSpec

if TYPE_CHECKING:
    from prefect_nightly_jobs.outcome import NightlyReport

STATUS_STYLE = {
    Status.SUCCESS: "green",
    Status.FAILURE: "bold red",
    Status.SKIPPED: "yellow",
    Status.RUNNING: "cyan",
}
# Wide enough that tables in CI logs and pipes do not wrap every message.
PIPE_WIDTH = 160


def console() -> Console:
    """A console on the current stdout (made per call: test runners swap stdout)."""
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(highlight=False, width=width, soft_wrap=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def status_text(status: Status | str) -> Text:
    value = Status(status)
    return Text(value.value, style=STATUS_STYLE[value])


def when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def jobs_table(specs: Sequence[JobSpec], enabled: Iterable[bool]) -> Table:
    table = Table(title="Jobs in run order", title_justify="left")
    for column in ("#", "job", "depends on", "enabled", "once per period", "description"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for index, (spec, on) in enumerate(zip(specs, enabled, strict=True), start=1):
        table.add_row(
            str(index),
            spec.job_type,
            ", ".join(spec.depends_on) or "-",
            Text("yes", style="green") if on else Text(f"no ({spec.enabled_flag})", style="yellow"),
            "yes" if spec.once_per_period else "no",
            spec.description,
        )
    return table


def status_table(report: StatusReport, registered: set[str]) -> Table:
    table = Table(title=f"Job status (database time {when(report.now)})", title_justify="left")
    for column in ("job", "last", "period", "started", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("error / reason", overflow="fold")
    table.add_column("running now", overflow="fold")
    for state in report.jobs:
        last = state.last
        name = state.job_type
        if name not in registered:
            name += " (unregistered)"
        running = ""
        if state.running is not None:
            run = state.running
            running = (
                f"execution {run.id} on {run.owner or 'unknown'} for {seconds(run.duration_s)}, "
                f"last heartbeat {seconds(run.heartbeat_age_s)} ago"
            )
        if last is None:
            table.add_row(name, Text("never run", style="dim"), "", "", "", "", running)
            continue
        table.add_row(
            name,
            status_text(last.status),
            last.period.isoformat() if last.period else "",
            when(last.started_at),
            seconds(last.duration_s),
            last.message or "",
            Text(running, style="cyan"),
        )
    return table


def status_json(report: StatusReport, registered: set[str]) -> dict[str, Any]:
    return {
        "now": report.now.isoformat(timespec="milliseconds"),
        "jobs": [
            {
                "job_type": state.job_type,
                "registered": state.job_type in registered,
                "last": state.last.to_json() if state.last else None,
                "running": state.running.to_json() if state.running else None,
            }
            for state in report.jobs
        ],
    }


def history_table(rows: Sequence[ExecutionRecord]) -> Table:
    table = Table(title="Executions, newest first", title_justify="left")
    for column in ("id", "job", "status", "period", "started", "duration", "error / reason"):
        table.add_column(column, justify="right" if column == "id" else "left", overflow="fold")
    for row in rows:
        detail = row.message or ""
        if row.status is Status.RUNNING:
            detail = f"heartbeat {seconds(row.heartbeat_age_s)} ago on {row.owner or 'unknown'}"
        table.add_row(
            str(row.id),
            row.job_type,
            status_text(row.status),
            row.period.isoformat() if row.period else "",
            when(row.started_at),
            seconds(row.duration_s),
            detail,
        )
    return table


def checks_table(results: Sequence[CheckResult]) -> Table:
    table = Table(title="jobctl check", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for result in results:
        verdict = Text("OK", style="green") if result.ok else Text("FAIL", style="bold red")
        table.add_row(result.name, verdict, result.detail)
    return table


def nightly_table(report: NightlyReport) -> Table:
    table = Table(title=f"Nightly run for {report.period.isoformat()}", title_justify="left")
    for column in ("job", "status", "duration", "error / reason", "execution"):
        table.add_column(column, overflow="fold")
    for outcome in report.outcomes:
        table.add_row(
            outcome.job_type,
            status_text(outcome.status),
            seconds(outcome.duration_s),
            outcome.reason or "",
            str(outcome.execution_id) if outcome.execution_id is not None else "-",
        )
    return table
