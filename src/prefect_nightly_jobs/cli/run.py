"""Commands that run jobs through Prefect: nightly and run."""

from __future__ import annotations

from typing import Annotated

import typer

from prefect_nightly_jobs.cli import live, render
from prefect_nightly_jobs.cli.exit_codes import ExitCode
from prefect_nightly_jobs.cli.runtime import load_runtime
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.schedule import parse_period

PeriodOption = Annotated[
    str | None,
    typer.Option(
        "--period",
        metavar="YYYY-MM-DD",
        help="The logical date to run for (a backfill); default: today in SYNC_CRON_TIMEZONE.",
        show_default=False,
    ),
]


def nightly(period: PeriodOption = None) -> None:
    """Run the nightly flow once, now: every enabled job in dependency order, with the lock.

    Uses the app database from DATABASE_URL (default: the embedded SQLite file jobs.sqlite3) and
    the Prefect API from PREFECT_API_URL (default: a temporary local Prefect server). Prints one
    line per job: status, duration, error or skip reason, execution id. On a terminal, shows
    which job is running, how many are done and the time elapsed while it runs. Exits 1 when any
    job failed, 0 otherwise (skips are not failures).
    """
    day = parse_period(period) if period is not None else None
    load_runtime()
    # Imported on use: Prefect takes a second to import and most commands never need it.
    from prefect_nightly_jobs.nightly_flow import run_nightly  # noqa: PLC0415

    with live.shown_on(render.progress_console()):
        report = run_nightly(day)
    render.console().print(render.nightly_table(report))
    typer.echo(render.nightly_summary(report))
    if report.failed:
        raise typer.Exit(ExitCode.FAILED)


def run(
    name: Annotated[str, typer.Argument(help="The job to run (see `jobctl list`).")],
    period: PeriodOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Skip the pre-check (e.g. 'already succeeded for this period'). Never skips "
            "the lock: a job that is running elsewhere is still SKIPPED.",
        ),
    ] = False,
) -> None:
    """Run one job now, through Prefect and with its lock, without its upstream jobs.

    Prints `SUCCESS`, `SKIPPED: <reason>` or `FAILURE: <error>`, then the execution id and duration.
    Exits 1 on FAILURE, 0 on SUCCESS or SKIPPED.
    """
    day = parse_period(period) if period is not None else None
    runtime = load_runtime()
    runtime.registry.get(name)  # an unknown job is a one-line error before Prefect starts
    from prefect_nightly_jobs.nightly_flow import run_job  # noqa: PLC0415

    outcome = run_job(name, period=day, force=force)
    status = Status(outcome.status)
    head = status.value if status is Status.SUCCESS else f"{status.value}: {outcome.reason or ''}"
    typer.echo(head)
    execution = f"execution {outcome.execution_id}" if outcome.execution_id else "no execution"
    typer.echo(f"{outcome.job_type}: {execution}, {render.seconds(outcome.duration_s)}")
    if status is Status.FAILURE:
        raise typer.Exit(ExitCode.FAILED)
