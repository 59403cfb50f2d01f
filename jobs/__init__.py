"""This project's jobs: one module per job, each a function decorated with ``@background_job``.

The plugin discovers them ([tool.prefect-nightly-jobs] in pyproject.toml names this package):
adding a job is adding a module (`jobctl new NAME`).
"""
