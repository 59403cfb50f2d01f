"""How `jobctl` shows things: rich tables for people, plain JSON for machines."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.bar import Bar
from rich.console import Console
from rich.table import Table
from rich.text import Text

from prefect_nightly_jobs.checks import CheckResult
from prefect_nightly_jobs.executions import ExecutionRecord, StatusReport
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import SkipKind
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


def progress_console() -> Console | None:
    """Where `jobctl nightly` draws its progress: stderr, when it is a terminal."""
    return Console(stderr=True, highlight=False) if sys.stderr.isatty() else None


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# A job not run because something failed reads apart from a skip as intended (as in the UI).
AFTER_FAILURE_STYLE = "dark_orange"


def status_text(status: Status | str) -> Text:
    value = Status(status)
    return Text(value.value, style=STATUS_STYLE[value])


def outcome_text(status: Status | str, skip_kind: SkipKind | None) -> Text:
    """``SUCCESS``, ``FAILURE``, or ``SKIPPED (kind)`` as in the nightly report."""
    if skip_kind is None:
        return status_text(status)
    style = AFTER_FAILURE_STYLE if skip_kind.after_failure else STATUS_STYLE[Status(status)]
    return Text(f"{Status(status).value} ({skip_kind.value})", style=style)


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
            outcome_text(last.status, last.skip_kind),
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
            outcome_text(row.status, row.skip_kind),
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
            outcome_text(outcome.status, outcome.skip_kind),
            seconds(outcome.duration_s),
            outcome.reason or "",
            str(outcome.execution_id) if outcome.execution_id is not None else "-",
        )
    return table


def nightly_summary(report: NightlyReport) -> str:
    """The line after the table: counts, the jobs not run because of a failure, the flow run."""
    counts = dict.fromkeys(Status, 0)
    for outcome in report.outcomes:
        counts[Status(outcome.status)] += 1
    line = (
        f"period {report.period.isoformat()}: {counts[Status.SUCCESS]} succeeded, "
        f"{counts[Status.SKIPPED]} skipped, {counts[Status.FAILURE]} failed"
    )
    not_run = [o.job_type for o in report.outcomes if o.skip_kind and o.skip_kind.after_failure]
    if not_run:
        line += f"; not run after a failure: {', '.join(not_run)}"
    if report.flow_run_id:
        line += f" (flow run {report.flow_run_id})"
    return line


CHART_WIDTH = 40


def durations_chart(job_type: str, rows: Sequence[ExecutionRecord]) -> Table:
    """One job's durations as bars, oldest first (``rows`` come newest first): the longest bar is
    the slowest run, so a job that is slowing down shows as bars that grow towards the bottom."""
    ordered = list(reversed(rows))
    longest = max((row.duration_s for row in ordered), default=0.0) or 1.0
    table = Table(
        title=f"Durations of {job_type}, oldest first", title_justify="left", caption_justify="left"
    )
    for column in ("id", "period", "started", "status"):
        table.add_column(column, justify="right" if column == "id" else "left", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("", width=CHART_WIDTH, no_wrap=True)
    for row in ordered:
        colour = STATUS_STYLE[row.status].removeprefix("bold ")
        table.add_row(
            str(row.id),
            row.period.isoformat() if row.period else "",
            when(row.started_at),
            status_text(row.status),
            seconds(row.duration_s),
            Bar(size=longest, begin=0, end=row.duration_s, width=CHART_WIDTH, color=colour),
        )
    if len(ordered) >= 3:
        last, before = ordered[-1].duration_s, [row.duration_s for row in ordered[:-1]]
        median = statistics.median(before)
        ratio = f"{last / median:.1f}x" if median > 0 else "n/a"
        table.caption = (
            f"last run {seconds(last)}: {ratio} the median of the {len(before)} before "
            f"({seconds(median)})"
        )
    return table
