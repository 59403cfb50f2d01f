"""Prefect flows: the nightly run of every registered job, and one job run on demand."""
