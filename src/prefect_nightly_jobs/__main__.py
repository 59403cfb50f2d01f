"""`python -m jobs` is `jobctl`."""

from prefect_nightly_jobs.cli import main

main()
