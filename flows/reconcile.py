"""The reconcile deployment's entrypoint (prefect.yaml): the plugin's flow that ends dead job
runs in the database and sets their Prefect runs Crashed, on a frequent schedule."""

from prefect_nightly_jobs import reconcile

__all__ = ["reconcile"]
