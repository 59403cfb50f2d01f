"""The nightly deployment's entrypoint (prefect.yaml): the plugin's flow, which runs every job of
this project's jobs package ([tool.prefect-nightly-jobs] in pyproject.toml) in dependency order;
and the flow of the per-job deployments it starts when JOB_DISPATCH=deployments."""

from prefect_nightly_jobs import nightly, nightly_job

__all__ = ["nightly", "nightly_job"]
