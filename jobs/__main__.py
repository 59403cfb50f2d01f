"""`python -m jobs` is `jobctl`."""

from jobs.cli import main

main()
