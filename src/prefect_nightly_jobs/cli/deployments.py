"""`jobctl deployments`: write (or check) prefect.yaml's per-job deployments."""

from __future__ import annotations

from typing import Annotated

import typer

from prefect_nightly_jobs import job_deployments
from prefect_nightly_jobs.cli.exit_codes import ExitCode
from prefect_nightly_jobs.cli.runtime import load_runtime
from prefect_nightly_jobs.project import find_project

PREFECT_YAML = "prefect.yaml"


def deployments(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 if prefect.yaml's block is out of date (CI)."
        ),
    ] = False,
) -> None:
    """Write one deployment per job into prefect.yaml, for JOB_DISPATCH=deployments.

    With JOB_DISPATCH=deployments (or the nightly deployment's `dispatch` parameter) the nightly
    flow runs each job as a flow run of `nightly-job/<job_type>` on the work pool. This command
    declares those deployments in prefect.yaml, between the `# >>> jobctl deployments` and
    `# <<< jobctl deployments` lines (appended to `deployments:` the first time): the nightly
    deployment's work pool, job variables and tags, with each job's own `job_variables` and
    `work_pool` (from its @background_job) over them. Then `prefect deploy --all` deploys them.
    """
    runtime = load_runtime()
    path = find_project().root / PREFECT_YAML
    update = job_deployments.plan(path, runtime.registry.ordered())
    if check:
        if update.changed:
            typer.echo(
                f"{path.name}: the per-job deployments are out of date: run `jobctl deployments`",
                err=True,
            )
            raise typer.Exit(ExitCode.FAILED)
        typer.echo(f"{path.name}: {len(update.names)} per-job deployments up to date")
        return
    if update.changed:
        path.write_text(update.text, encoding="utf-8")
    state = "written" if update.changed else "already up to date"
    typer.echo(f"{path.name}: {len(update.names)} per-job deployments {state}")
    for name in update.names:
        typer.echo(f"  {name}")
    if update.changed:
        typer.echo("deploy them with: prefect deploy --all")
