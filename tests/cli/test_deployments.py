"""`jobctl deployments`: the per-job deployments generated into prefect.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.job_deployments import BEGIN, END, plan
from prefect_nightly_jobs.registry import JobSpec
from tests import REPO_ROOT
from tests.cli.conftest import Invoke, copy_project

NIGHTLY = """\
name: demo
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /srv/demo

deployments:
  - name: jobs
    entrypoint: flows/nightly.py:nightly
    tags: [nightly-jobs]
    work_pool:
      name: nightly-pool
      job_variables:
        env:
          PREFECT_LOGGING_EXTRA_LOGGERS: prefect_nightly_jobs
          SHARED: from-nightly
"""
SPECS = [
    JobSpec("extract", description="Pull the day's rows."),
    JobSpec(
        "crunch",
        depends_on=("extract",),
        job_variables={"env": {"SHARED": "from-job", "BATCH": "500"}, "working_dir": "/big"},
        work_pool="big-pool",
    ),
]


def deployments_of(text: str) -> dict[str, dict[str, object]]:
    return {d["name"]: d for d in yaml.safe_load(text)["deployments"]}


def test_block_is_appended_then_replaced_in_place(tmp_path: Path) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(NIGHTLY)
    first = plan(path, SPECS)
    assert first.changed and first.names == ["nightly-job/extract", "nightly-job/crunch"]
    assert first.text.startswith(NIGHTLY), "the user's part is kept byte for byte"
    found = deployments_of(first.text)
    assert found["extract"] == {
        "name": "extract",
        "entrypoint": "flows/nightly.py:nightly_job",
        "description": "Pull the day's rows.",
        "tags": ["nightly-jobs", "nightly-job"],
        "parameters": {"job_type": "extract"},
        "work_pool": {
            "name": "nightly-pool",
            "job_variables": {
                "env": {
                    "PREFECT_LOGGING_EXTRA_LOGGERS": "prefect_nightly_jobs",
                    "SHARED": "from-nightly",
                }
            },
        },
    }
    # The job's own declaration wins, its env merged by name over the nightly one's.
    assert found["crunch"]["work_pool"] == {
        "name": "big-pool",
        "job_variables": {
            "env": {
                "PREFECT_LOGGING_EXTRA_LOGGERS": "prefect_nightly_jobs",
                "SHARED": "from-job",
                "BATCH": "500",
            },
            "working_dir": "/big",
        },
    }
    assert "&id" not in first.text, "no YAML anchors: each deployment reads on its own"

    path.write_text(first.text + "# a user's comment after the block\n")
    fewer = plan(path, SPECS[:1])
    assert list(deployments_of(fewer.text)) == ["jobs", "extract"]
    assert fewer.text.count(BEGIN) == 1 and fewer.text.count(END) == 1
    assert fewer.text.endswith("# a user's comment after the block\n")
    path.write_text(fewer.text)
    assert not plan(path, SPECS[:1]).changed, "a second run changes nothing"


def test_a_file_it_cannot_place_the_block_in_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(NIGHTLY + "build: null\n")  # deployments is not the last section
    with pytest.raises(ConfigurationError, match="put the two lines"):
        plan(path, SPECS)
    path.write_text(NIGHTLY.replace("nightly.py:nightly", "nightly.py:other"))
    with pytest.raises(ConfigurationError, match="no deployment whose entrypoint"):
        plan(path, SPECS)
    path.write_text(f"{BEGIN}\n{END}\n{NIGHTLY}")  # markers outside `deployments:`
    with pytest.raises(ConfigurationError, match="keep the marker lines inside `deployments:`"):
        plan(path, SPECS)
    with pytest.raises(ConfigurationError, match="not found"):
        plan(tmp_path / "missing.yaml", SPECS)


def test_job_variables_must_be_json_values() -> None:
    with pytest.raises(ConfigurationError, match="job 'bad': job_variables must hold JSON"):
        JobSpec("bad", job_variables={"env": {"WHEN": object()}})


@pytest.mark.usefixtures("clean_env")
def test_the_reference_prefect_yaml_is_up_to_date(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    result = cli("deployments", "--check")
    assert result.exit_code == 0, result.output
    assert "3 per-job deployments up to date" in result.stdout


@pytest.mark.usefixtures("clean_env")
def test_check_fails_until_the_block_is_written(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "app")
    prefect_yaml = project / "prefect.yaml"
    text = prefect_yaml.read_text()
    prefect_yaml.write_text(text[: text.index(BEGIN)])  # as `jobctl init` writes it
    monkeypatch.chdir(project)
    stale = cli("deployments", "--check")
    assert stale.exit_code == 1
    assert "out of date: run `jobctl deployments`" in stale.stderr
    written = cli("deployments")
    assert written.exit_code == 0, written.output
    assert "nightly-job/import_events" in written.stdout
    assert prefect_yaml.read_text() == text
    assert cli("deployments", "--check").exit_code == 0
