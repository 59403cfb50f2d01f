"""Operator commands: list, check, status, history, unlock, reap."""

from __future__ import annotations

from typing import Annotated

import typer

from prefect_nightly_jobs import executions
from prefect_nightly_jobs.checks import run_checks
from prefect_nightly_jobs.cli import render
from prefect_nightly_jobs.cli.exit_codes import ExitCode
from prefect_nightly_jobs.cli.runtime import load_registry, load_runtime, open_database
from prefect_nightly_jobs.models import Status

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")
]


def list_jobs() -> None:
    """List the registered jobs in the order the nightly flow runs them.

    Shows each job's dependencies, whether its `<JOB>_ENABLED` flag lets it run, whether it runs
    once per period, and its description. Needs no database.
    """
    runtime = load_runtime()
    ordered = runtime.registry.ordered()
    render.console().print(render.jobs_table(ordered, (spec.enabled() for spec in ordered)))


def check() -> None:
    """Check everything a deployment needs; exit non-zero on any FAIL (run it in CI).

    Checks the settings, the job catalog and its dependency order, the enable flags, the cron
    schedule and timezone, that the database answers, that its migrations are at head, and that
    every job's tables exist.
    Prints one OK/FAIL line per check. Never writes to the database.
    """
    results = run_checks(load_registry)
    render.console().print(render.checks_table(results))
    failed = [result.name for result in results if not result.ok]
    if failed:
        typer.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(ExitCode.FAILED)


def status(json_output: JsonOption = False) -> None:
    """Show each job's last finished execution and its RUNNING one, if any.

    For the last execution: status, period, start, duration and error or skip reason. For a
    RUNNING execution: id, owner (host:pid), how long it has run and how long ago it last sent a
    heartbeat, all measured with the database clock. Jobs that are not registered but still have
    a RUNNING execution are listed too.

    --json prints {"now": ..., "jobs": [{"job_type", "registered", "last", "running"}]} where
    "last" and "running" are execution objects (see `jobctl history --help`) or null.
    """
    runtime = load_runtime()
    names = [spec.job_type for spec in runtime.registry.ordered()]
    with open_database(runtime.settings) as engine:
        report = executions.job_states(engine, names)
    if json_output:
        render.emit_json(render.status_json(report, set(names)))
        return
    render.console().print(render.status_table(report, set(names)))


def history(
    name: Annotated[
        str | None, typer.Argument(help="Only this job (default: every job).", show_default=False)
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", min=1, max=executions.MAX_HISTORY, help="How many executions to show."
        ),
    ] = 20,
    status_filter: Annotated[
        Status | None,
        typer.Option(
            "--status",
            "-s",
            case_sensitive=False,
            help="Only executions with this status.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    chart: Annotated[
        bool,
        typer.Option(
            "--chart",
            help="Draw NAME's recent durations as bars, oldest first (skipped runs left out).",
        ),
    ] = False,
) -> None:
    """Show recent executions, newest first.

    --chart draws one job's recent durations as a bar chart (a slowing job stands out).

    --json prints {"now": ..., "executions": [...]}, each execution an object with: id, job_type,
    status, period (YYYY-MM-DD or null), started_at, completed_at, heartbeat_at (ISO 8601, UTC),
    duration_s (for a RUNNING row: time since it started), heartbeat_age_s (RUNNING rows only),
    message (error or skip reason), owner (host:pid), flow_run_id, task_run_id, attempt.
    """
    if chart and name is None:
        raise typer.BadParameter("--chart draws one job: give its NAME", param_hint="NAME")
    if chart and json_output:
        raise typer.BadParameter("use either --chart or --json", param_hint="--chart")
    runtime = load_runtime()
    with open_database(runtime.settings) as engine:
        report = executions.history(
            engine,
            name,
            limit=limit,
            status=status_filter,
            ran_only=chart and status_filter is None,
        )
    rows = report.executions
    # An unregistered name may still have rows (a job removed from the catalog): show them.
    if name is not None and name not in runtime.registry and not rows:
        runtime.registry.get(name)  # raises the one-line "unknown job" error with the known names
    if json_output:
        render.emit_json(
            {
                "now": report.now.isoformat(timespec="milliseconds"),
                "executions": [row.to_json() for row in rows],
            }
        )
        return
    if not rows:
        typer.echo("no executions recorded yet" + (f" for {name}" if name else ""))
        return
    if chart and name is not None:
        render.console().print(render.durations_chart(name, rows))
        return
    render.console().print(render.history_table(rows))


def unlock(
    name: Annotated[str, typer.Argument(help="The job whose RUNNING execution to release.")],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            "-r",
            help="Why (required): stored in the row as `released by operator: <reason>`.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Release a job's lock: end its RUNNING execution as FAILURE `released by operator: <reason>`.

    Use it when a job is stuck or its process is gone and you do not want to wait for
    STALE_JOB_THRESHOLD_MS. The update only applies to a row that is still RUNNING. If the job is
    in fact alive, its next heartbeat finds the row released: the job can see it lost its lock,
    and its own final status is not written over the release. Refuses (exit 5) when nothing of
    that job is running.
    """
    if reason is None:  # checked here: typer < 0.17 under click >= 8.2 lets a required option pass
        raise typer.BadParameter(
            "required: say why, e.g. --reason 'worker host died'", None, None, "'--reason'"
        )
    runtime = load_runtime()
    with open_database(runtime.settings) as engine:
        released = executions.unlock(engine, name, reason)
    ran = render.seconds(released.duration_s)
    typer.echo(
        f"released execution {released.id} of {released.job_type} "
        f"(owner {released.owner or 'unknown'}, ran {ran}): "
        f"{released.status.value} {released.message!r}"
    )
    if name not in runtime.registry:
        typer.echo(f"note: {name!r} is not a registered job (see `jobctl list`)")


def reap() -> None:
    """End every dead run now: RUNNING executions of any job type whose last heartbeat is older
    than STALE_JOB_THRESHOLD_MS (and, on SQLite, whose process is gone) become FAILURE
    `abandoned: no heartbeat since …`. Prints what it ended. The nightly flow does the same when it
    starts; acquiring a job does it for that job.
    """
    # Imported here: it brings Prefect, which the other operator commands never need.
    from prefect_nightly_jobs.reconciliation import reconcile_now  # noqa: PLC0415

    runtime = load_runtime()
    with open_database(runtime.settings) as engine:
        result = reconcile_now(engine, runtime.settings.stale_job_threshold_ms)
    if not result.reaped:
        typer.echo("nothing to reap: no RUNNING execution is stale")
    for dead in result.reaped:
        typer.echo(f"reaped execution {dead.execution_id} of {dead.job_type}: {dead.message}")
    for dead in result.reported:
        if dead.flow_run_id or dead.task_run_id:
            typer.echo(f"execution {dead.execution_id}: its Prefect runs set Crashed")
    if result.still_pending:
        typer.echo(
            f"warning: {result.still_pending} reaped execution(s) not reported to Prefect "
            f"({result.api_error}); run `jobctl reap` again when the Prefect API is reachable",
            err=True,
        )
