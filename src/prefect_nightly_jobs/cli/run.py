"""Commands that run jobs through Prefect: nightly and run."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from prefect_nightly_jobs.cli import live, render
from prefect_nightly_jobs.cli.exit_codes import ExitCode
from prefect_nightly_jobs.cli.runtime import load_runtime
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.schedule import parse_period, validate_request

if TYPE_CHECKING:
    from prefect_nightly_jobs.outcome import NightlyReport

PeriodOption = Annotated[
    str | None,
    typer.Option(
        "--period",
        metavar="YYYY-MM-DD",
        help="The period to run for; default: the last schedule interval that has ended "
        "(SYNC_CRON_SCHEDULE in SYNC_CRON_TIMEZONE: yesterday for the daily cron).",
        show_default=False,
    ),
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="YYYY-MM-DD",
        help="Backfill: the first period to run (with --to).",
        show_default=False,
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="YYYY-MM-DD",
        help="Backfill: the last period to run, included (with --from).",
        show_default=False,
    ),
]


def _print_report(report: NightlyReport, *, with_flow_run: bool = True) -> None:
    render.console().print(render.nightly_table(report))
    shown = report if with_flow_run else replace(report, flow_run_id=None)
    typer.echo(render.nightly_summary(shown))


def nightly(
    period: PeriodOption = None, period_from: FromOption = None, period_to: ToOption = None
) -> None:
    """Run the nightly flow once, now: every enabled job in dependency order, with the lock.

    The period is the last schedule interval that has ended (yesterday for the daily cron),
    or --period. `--from A --to B` backfills: each period from A to B in order, each job skipped
    where it already succeeded for that period.

    Uses the app database from DATABASE_URL (default: the embedded SQLite file jobs.sqlite3) and
    the Prefect API from PREFECT_API_URL (default: a temporary local Prefect server). Prints one
    line per job: status, duration, error or skip reason, execution id; a backfill prints that
    per period, then a summary line. On a terminal, shows which job is running, how many are done
    and the time elapsed while it runs. Exits 1 when any job failed, 0 otherwise (skips are not
    failures).
    """
    day = parse_period(period) if period is not None else None
    first = parse_period(period_from, "--from") if period_from is not None else None
    last = parse_period(period_to, "--to") if period_to is not None else None
    validate_request(day, first, last)
    load_runtime()
    # Imported on use: Prefect takes a second to import and most commands never need it.
    from prefect_nightly_jobs.nightly_flow import run_backfill, run_nightly  # noqa: PLC0415

    if first is None or last is None:
        with live.shown_on(render.progress_console()):
            report = run_nightly(day)
        _print_report(report)
        if report.failed:
            raise typer.Exit(ExitCode.FAILED)
        return
    with live.shown_on(render.progress_console()):
        backfill = run_backfill(first, last)
    for each in backfill.reports:
        _print_report(each, with_flow_run=False)
    where = f" (flow run {backfill.flow_run_id})" if backfill.flow_run_id else ""
    typer.echo(f"backfill {backfill.summary()}{where}")
    if backfill.failed:
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
