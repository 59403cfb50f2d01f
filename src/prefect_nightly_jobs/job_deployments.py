"""The per-job deployments of prefect.yaml, for JOB_DISPATCH=deployments (``jobctl deployments``).

The scale-out nightly flow starts each job as a flow run of ``nightly-job/<job_type>``. Those
deployments are generated into prefect.yaml, between two marker lines inside ``deployments:``, from
the jobs' declarations (``job_variables``, ``work_pool``, description) and the nightly deployment
(its work pool, job variables, tags and entrypoint file): ``prefect deploy --all`` then deploys
them with the nightly one. ``--check`` says whether the block is up to date (CI).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.registry import JobSpec

JOB_FLOW = "nightly-job"  # the flow name of ``scaleout.nightly_job``, without importing Prefect
BEGIN = "  # >>> jobctl deployments"
END = "  # <<< jobctl deployments"
_HEADER = [
    "  # One deployment per job, for JOB_DISPATCH=deployments (generated: declare a job's",
    "  # job_variables / work_pool on its @background_job, then run `jobctl deployments`).",
]
_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def deployment_name(job_type: str) -> str:
    """The job's deployment, ``nightly-job/<job_type>``."""
    return f"{JOB_FLOW}/{job_type}"


@dataclass(frozen=True)
class Nightly:
    """What the per-job deployments take from the nightly deployment."""

    entrypoint: str  # "flows/nightly.py:nightly_job"
    work_pool: str
    job_variables: Mapping[str, Any]
    tags: list[str]


def _nightly(document: Any, path: Path) -> Nightly:
    deployments = document.get("deployments") if isinstance(document, dict) else None
    for deployment in deployments or []:
        entrypoint = str(deployment.get("entrypoint", "")) if isinstance(deployment, dict) else ""
        module, _, name = entrypoint.rpartition(":")
        if name != "nightly":
            continue
        pool = deployment.get("work_pool") or {}
        if not isinstance(pool, dict) or not pool.get("name"):
            raise ConfigurationError(
                f"{path}: the nightly deployment has no work_pool name: the jobs' deployments "
                "go to its work pool"
            )
        return Nightly(
            entrypoint=f"{module}:nightly_job",
            work_pool=str(pool["name"]),
            job_variables=dict(pool.get("job_variables") or {}),
            tags=[str(tag) for tag in deployment.get("tags") or []],
        )
    raise ConfigurationError(
        f"{path} has no deployment whose entrypoint is a module's `nightly` flow "
        "(e.g. flows/nightly.py:nightly): `jobctl init` writes one"
    )


def merged_job_variables(base: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's job variables over the nightly deployment's; ``env`` is merged by name."""
    merged = copy.deepcopy({**base, **job})  # nothing shared: YAML would write anchors
    if isinstance(base.get("env"), Mapping) and isinstance(job.get("env"), Mapping):
        merged["env"] = copy.deepcopy({**base["env"], **job["env"]})
    return merged


def deployments(specs: Iterable[JobSpec], nightly: Nightly) -> list[dict[str, Any]]:
    """The prefect.yaml entries, one per job in run order."""
    entries: list[dict[str, Any]] = []
    for spec in specs:
        pool: dict[str, Any] = {"name": spec.work_pool or nightly.work_pool}
        variables = merged_job_variables(nightly.job_variables, spec.job_variables)
        if variables:
            pool["job_variables"] = variables
        entry: dict[str, Any] = {"name": spec.job_type, "entrypoint": nightly.entrypoint}
        if spec.description:
            entry["description"] = spec.description
        entry.update(
            tags=[*nightly.tags, "nightly-job"],
            parameters={"job_type": spec.job_type},
            work_pool=pool,
        )
        entries.append(entry)
    return entries


def render_block(entries: list[dict[str, Any]]) -> list[str]:
    body = yaml.safe_dump(entries, sort_keys=False, default_flow_style=None, width=100)
    lines = [f"  {line}" if line else line for line in body.splitlines()] if entries else []
    return [BEGIN, *_HEADER, *lines, END]


@dataclass(frozen=True)
class Update:
    path: Path
    text: str  # the new file
    changed: bool
    names: list[str]  # the deployments of the block, "nightly-job/<job_type>"


def plan(path: Path, specs: Iterable[JobSpec]) -> Update:
    """prefect.yaml with the per-job block written (replacing the old one, or appended to the
    deployments list when it is the file's last section); raises ConfigurationError otherwise."""
    if not path.is_file():
        raise ConfigurationError(f"{path} not found: run `jobctl init` to create prefect.yaml")
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{path} is not valid YAML: {_one_line(err)}") from None
    ordered = list(specs)
    block = render_block(deployments(ordered, _nightly(document, path)))
    lines = text.splitlines()
    if BEGIN in lines and END in lines and lines.index(BEGIN) < lines.index(END):
        start, end = lines.index(BEGIN), lines.index(END)
        new_lines = [*lines[:start], *block, *lines[end + 1 :]]
    elif _deployments_last(lines):
        new_lines = [*_without_trailing_blanks(lines), *block]
    else:
        raise ConfigurationError(
            f"{path}: put the two lines {BEGIN.strip()!r} and {END.strip()!r} inside "
            "`deployments:` (indented by two spaces), then run `jobctl deployments` again"
        )
    new_text = "\n".join(new_lines) + "\n"
    names = [deployment_name(spec.job_type) for spec in ordered]
    _still_valid(new_text, path, names)
    return Update(path=path, text=new_text, changed=new_text != text, names=names)


def _deployments_last(lines: list[str]) -> bool:
    keys = [line.split(":")[0] for line in lines if _TOP_LEVEL_KEY.match(line)]
    return bool(keys) and keys[-1] == "deployments"


def _without_trailing_blanks(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _one_line(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or type(err).__name__
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)


def _still_valid(text: str, path: Path, names: list[str]) -> None:
    """The written file must parse and list every job's deployment (markers misplaced, say)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigurationError(
            f"{path}: the per-job deployments would not be valid YAML there ({_one_line(err)}): "
            "keep the marker lines inside `deployments:`, indented by two spaces"
        ) from None
    entrypoints = {
        (d.get("name"), str(d.get("entrypoint", "")).rpartition(":")[2])
        for d in (document or {}).get("deployments") or []
        if isinstance(d, dict)
    }
    lost = [n for n in names if (n.split("/")[1], "nightly_job") not in entrypoints]
    if lost:
        raise ConfigurationError(
            f"{path}: the marker lines are not inside `deployments:` ({', '.join(lost)} would "
            "not be deployed): move them there, indented by two spaces"
        )
