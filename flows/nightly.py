"""The nightly deployment's entrypoint (prefect.yaml): the plugin's flow, which runs every job of
this project's jobs package ([tool.prefect-nightly-jobs] in pyproject.toml) in dependency order."""

from prefect_nightly_jobs import nightly

__all__ = ["nightly"]
