"""What a job is, independent of how it runs: its type, dependencies and options.

The Prefect layer (``jobs.task``) builds a ``JobSpec`` for each decorated function; the catalog
(``jobs.catalog``) lists them in one place, in registration order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_nightly_jobs.dag import topological_order
from prefect_nightly_jobs.errors import ConfigurationError, DependencyError
from prefect_nightly_jobs.lock import PreCheck, validate_job_type
from prefect_nightly_jobs.settings import enabled_flag_name, job_enabled


@dataclass(frozen=True)
class JobSpec:
    job_type: str
    depends_on: tuple[str, ...] = ()
    description: str = ""
    once_per_period: bool = False
    pre_check: PreCheck | None = None
    retries: int = 0
    retry_delay_seconds: float = 0.0
    # Scale-out (JOB_DISPATCH=deployments): the infrastructure overrides of this job's flow runs
    # (Prefect job variables, e.g. {"env": {...}} or a Kubernetes pool's "memory"), and the work
    # pool of its deployment when it is not the nightly one's.
    job_variables: Mapping[str, Any] = field(default_factory=dict, compare=False)
    work_pool: str | None = None
    # The runnable (a Prefect task in practice); the registry never calls it.
    runner: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_job_type(self.job_type)
        for up in self.depends_on:
            validate_job_type(up)
        _check_job_variables(self.job_type, self.job_variables)

    @property
    def enabled_flag(self) -> str:
        return enabled_flag_name(self.job_type)

    def enabled(self) -> bool:
        return job_enabled(self.job_type)


def _check_job_variables(job_type: str, job_variables: Mapping[str, Any]) -> None:
    example = 'e.g. {"env": {"BATCH_SIZE": "500"}}'
    if not isinstance(job_variables, Mapping) or not all(isinstance(k, str) for k in job_variables):
        raise ConfigurationError(
            f"job {job_type!r}: job_variables must map names to values, {example}"
        )
    try:
        json.dumps(job_variables)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(
            f"job {job_type!r}: job_variables must hold JSON values only (they go to "
            f"prefect.yaml and the Prefect API): {err}"
        ) from None


class Registry:
    """Job specs in registration order; checks duplicates, unknown dependencies and cycles."""

    def __init__(self, specs: Iterable[JobSpec] = ()) -> None:
        self._specs: dict[str, JobSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: JobSpec) -> None:
        if spec.job_type in self._specs:
            raise DependencyError(
                f"job type {spec.job_type!r} is declared twice: give each job a type of its own"
            )
        self._specs[spec.job_type] = spec

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._specs

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, job_type: str) -> JobSpec:
        try:
            return self._specs[job_type]
        except KeyError:
            known = ", ".join(self._specs) or "none"
            raise DependencyError(
                f"unknown job {job_type!r}: use one of {known} (see `jobctl list`)"
            ) from None

    def graph(self) -> dict[str, tuple[str, ...]]:
        return {name: spec.depends_on for name, spec in self._specs.items()}

    def ordered(self) -> Sequence[JobSpec]:
        """Every job in run order; raises DependencyError before anything runs."""
        return [self._specs[name] for name in topological_order(self.graph())]
