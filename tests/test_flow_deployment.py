"""prefect.yaml and its build step, without a server (the e2e test deploys it for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefect_nightly_jobs.deployment import deployment_settings
from tests import REPO_ROOT


def test_defaults_when_unset_or_empty(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert deployment_settings() == {
        "cron": "0 0 * * *",
        "timezone": "UTC",
        "reconcile_interval": 60,
        "project_dir": str(clean_env.resolve()),  # the project around the working directory
    }
    # What `{{ $SYNC_CRON_SCHEDULE }}` would have rendered for an unset variable.
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", "")
    monkeypatch.setenv("SYNC_CRON_TIMEZONE", "")
    monkeypatch.setenv("RECONCILE_INTERVAL_SECONDS", "")
    assert deployment_settings()["cron"] == "0 0 * * *"
    assert deployment_settings()["timezone"] == "UTC"
    assert deployment_settings()["reconcile_interval"] == 60


def test_configured_schedule(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", "30 2 * * 1-5")
    monkeypatch.setenv("SYNC_CRON_TIMEZONE", "Europe/Berlin")
    settings = deployment_settings()
    assert (settings["cron"], settings["timezone"]) == ("30 2 * * 1-5", "Europe/Berlin")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SYNC_CRON_SCHEDULE", "61 * * * *", "SYNC_CRON_SCHEDULE '61 * * * *' is not a valid cron"),
        ("SYNC_CRON_SCHEDULE", "every night", "is not a valid cron expression: use five fields"),
        ("SYNC_CRON_TIMEZONE", "Mars/Base", "SYNC_CRON_TIMEZONE 'Mars/Base' is not a known IANA"),
        ("RECONCILE_INTERVAL_SECONDS", "0", "RECONCILE_INTERVAL_SECONDS must be an integer from 1"),
        ("RECONCILE_INTERVAL_SECONDS", "1m", "RECONCILE_INTERVAL_SECONDS must be an integer from"),
    ],
)
def test_invalid_values_stop_the_deploy_with_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
        deployment_settings()
    text = str(stop.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text


def test_prefect_yaml_wires_the_nightly_deployment() -> None:
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    assert config["build"] == [
        {"prefect_nightly_jobs.deployment.deployment_settings": {"id": "settings"}}
    ]
    (pull,) = config["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ settings.project_dir }}"
    )
    deployment, reconcile, *per_job = config["deployments"]
    assert deployment["entrypoint"] == "flows/nightly.py:nightly"
    # Then the jobs' own deployments, for JOB_DISPATCH=deployments (tests/cli/test_deployments.py).
    assert [d["entrypoint"] for d in per_job] == ["flows/nightly.py:nightly_job"] * len(per_job)
    assert deployment["schedules"] == [
        {"cron": "{{ settings.cron }}", "timezone": "{{ settings.timezone }}", "active": True}
    ]
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert deployment["work_pool"]["name"] == "nightly-pool"
    # The sweep that needs no next run: a frequent schedule, never two at once.
    assert reconcile["entrypoint"] == "flows/reconcile.py:reconcile"
    assert reconcile["schedules"] == [
        {"rrule": "FREQ=SECONDLY;INTERVAL={{ settings.reconcile_interval }}", "active": True}
    ]
    assert "concurrency_limit" not in reconcile  # a sweep killed with its worker blocks none
    assert reconcile["work_pool"]["name"] == "nightly-pool"
