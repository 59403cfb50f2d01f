"""`jobctl` (also `python -m jobs`): scaffold, run and operate background jobs."""

from __future__ import annotations

from prefect_nightly_jobs.cli.app import app


def main() -> None:
    app(prog_name="jobctl")


__all__ = ["app", "main"]
