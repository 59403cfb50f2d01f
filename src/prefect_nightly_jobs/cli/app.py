"""The `jobctl` command line: one Typer app, and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from prefect_nightly_jobs.cli import db, operate, run
from prefect_nightly_jobs.cli.deployments import deployments
from prefect_nightly_jobs.cli.exit_codes import ExitCode, exit_code_for
from prefect_nightly_jobs.cli.init import init
from prefect_nightly_jobs.cli.new import new
from prefect_nightly_jobs.cli.runtime import DEBUG_ENV
from prefect_nightly_jobs.errors import JobsError
from prefect_nightly_jobs.settings import mask_url

# Usage errors, --help and explicit exits pass through untouched. Typer >= 0.20 has its own classes
# for them (TyperException among them); older typer raises click's, and has no TyperException.
_TYPER_CONTROL = ("Exit", "Abort", "TyperException")
_CLI_CONTROL: tuple[type[BaseException], ...] = tuple(
    {
        click.exceptions.Exit,
        click.exceptions.Abort,
        click.ClickException,
        *(getattr(typer, name) for name in _TYPER_CONTROL if hasattr(typer, name)),
    }
)


def _fail(message: str, code: ExitCode) -> typer.Exit:
    # typer.echo, not rich: rich would wrap a long line at the terminal width.
    first = mask_url(message).strip().splitlines()[0] if message.strip() else "error"
    typer.echo(f"error: {first}", err=True)
    return typer.Exit(code)


class _JobsGroup(TyperGroup):
    """Every command runs inside this invoke: a JobsError (bad settings, unreachable database,
    unknown job, refused scaffold...) becomes one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except JobsError as err:
            raise _fail(err.message, exit_code_for(err)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", ExitCode.INTERRUPTED) from None
        except BrokenPipeError:
            # `jobctl history | head`: the reader left; stop quietly, as other tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(ExitCode.FAILED) from None
        except _CLI_CONTROL:
            raise
        except Exception as err:
            if os.environ.get(DEBUG_ENV):
                raise
            raise _fail(
                f"unexpected {type(err).__name__}: {err} (set {DEBUG_ENV}=1 to see the traceback)",
                ExitCode.UNEXPECTED,
            ) from None


app = typer.Typer(
    cls=_JobsGroup,
    name="jobctl",
    help=(
        "Scheduled background jobs on Prefect, guarded by a database lock: add jobs, run them, "
        "and see and fix what they did.\n\n"
        "Exit codes: 0 ok, 1 a job or check failed, 2 bad command line, 3 configuration "
        "(settings, unknown job, dependency cycle), 4 database unreachable or not migrated, "
        "5 nothing to unlock, 6 `init`/`new` refused (nothing written), 70 unexpected error "
        f"({DEBUG_ENV}=1 shows the traceback), 130 interrupted."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("init")(init)
app.command("new")(new)
app.command("list")(operate.list_jobs)
app.command("check")(operate.check)
app.command("status")(operate.status)
app.command("history")(operate.history)
app.command("unlock")(operate.unlock)
app.command("reap")(operate.reap)
app.command("run")(run.run)
app.command("nightly")(run.nightly)
app.command("deployments")(deployments)
app.add_typer(db.app, name="db")
