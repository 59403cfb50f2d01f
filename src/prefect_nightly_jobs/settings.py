"""Configuration, read from the environment (and ``.env``) and validated before any job runs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_nightly_jobs.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///jobs.sqlite3"
DEFAULT_CRON = "0 0 * * *"
DEFAULT_STALE_MS = 300_000
# How often the reconcile deployment sweeps: a crash shows for at most the threshold plus this.
DEFAULT_RECONCILE_S = 60
MIN_STALE_MS = 10
# Each parallel job holds a pooled connection (and a thread) for as long as it runs.
MAX_PARALLEL_LIMIT = 64
ENV_FILE = ".env"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# The look-behind makes a scheme match start only at the start of a run of scheme characters:
# without it, a long run of letters costs quadratic time (seconds for a 1 MB error message).
_URL_CREDENTIALS = re.compile(
    r"(?<![a-z0-9+.-])(?P<scheme>[a-z0-9+.-]+://)(?P<user>[^:/@]*):(?P<pw>[^@]*)@", re.I
)


def mask_url(url: str) -> str:
    """Hide the password of a URL-like string, even one too malformed to parse."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


class Dispatch(StrEnum):
    """Where the nightly flow runs each job."""

    IN_PROCESS = "in_process"  # as tasks of the nightly flow run, in its process
    DEPLOYMENTS = "deployments"  # each as a flow run of its own deployment, on the work pool


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"[+]?\d+", text) or int(text) < minimum:
        unit = "milliseconds" if minimum == 1 else f"milliseconds, at least {minimum}"
        raise ValueError(f"{name} must be a positive integer ({unit}), got {text!r}")
    return int(text)


class Settings(BaseSettings):
    """Every setting the project reads; names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    database_url: SecretStr = Field(default=SecretStr(DEFAULT_DATABASE_URL))
    stale_job_threshold_ms: int = DEFAULT_STALE_MS
    job_heartbeat_interval_ms: int | None = None
    sync_cron_schedule: str = DEFAULT_CRON
    sync_cron_timezone: str = "UTC"
    max_parallel_jobs: int = 1
    reconcile_interval_seconds: int = DEFAULT_RECONCILE_S
    job_dispatch: Dispatch = Dispatch.IN_PROCESS

    @field_validator("database_url", mode="before")
    @classmethod
    def _url_not_blank(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        # An unset variable rendered by a template arrives as "": treat it as unset.
        return SecretStr(raw.strip() or DEFAULT_DATABASE_URL)

    @field_validator("stale_job_threshold_ms", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> int:
        # At least 10 ms so the default heartbeat (a fifth) still fits twice inside the threshold.
        return _positive_int("STALE_JOB_THRESHOLD_MS", value, minimum=MIN_STALE_MS)

    @field_validator("job_heartbeat_interval_ms", mode="before")
    @classmethod
    def _heartbeat(cls, value: Any) -> int | None:
        if value is None or str(value).strip() == "":
            return None
        return _positive_int("JOB_HEARTBEAT_INTERVAL_MS", value)

    @field_validator("max_parallel_jobs", mode="before")
    @classmethod
    def _parallel(cls, value: Any) -> int:
        text = str(value).strip()
        if not re.fullmatch(r"[+]?\d+", text) or not 1 <= int(text) <= MAX_PARALLEL_LIMIT:
            raise ValueError(
                f"MAX_PARALLEL_JOBS must be an integer from 1 to {MAX_PARALLEL_LIMIT}, got {text!r}"
            )
        return int(text)

    @field_validator("reconcile_interval_seconds", mode="before")
    @classmethod
    def _reconcile_interval(cls, value: Any) -> int:
        text = str(value).strip()
        if text == "":  # prefect.yaml renders an unset variable as ""
            return DEFAULT_RECONCILE_S
        if not re.fullmatch(r"[+]?\d+", text) or not 1 <= int(text) <= 86_400:
            raise ValueError(
                f"RECONCILE_INTERVAL_SECONDS must be an integer from 1 to 86400, got {text!r}"
            )
        return int(text)

    @field_validator("job_dispatch", mode="before")
    @classmethod
    def _dispatch(cls, value: Any) -> Dispatch:
        text = str(value).strip().lower() or Dispatch.IN_PROCESS.value
        try:
            return Dispatch(text)
        except ValueError:
            choices = " or ".join(d.value for d in Dispatch)
            raise ValueError(f"JOB_DISPATCH must be {choices}, got {value!r}") from None

    @field_validator("sync_cron_schedule", mode="before")
    @classmethod
    def _cron_default(cls, value: Any) -> str:
        # prefect.yaml renders an unset variable as "": that means "use the default".
        return " ".join(str(value).split()) or DEFAULT_CRON

    @field_validator("sync_cron_timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> str:
        name = str(value).strip() or "UTC"
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"SYNC_CRON_TIMEZONE {name!r} is not a known IANA timezone: "
                "use a name such as 'UTC' or 'Europe/Berlin'"
            ) from None
        return name

    @model_validator(mode="after")
    def _heartbeat_inside_threshold(self) -> Settings:
        interval = self.job_heartbeat_interval_ms
        if interval is not None and interval * 2 >= self.stale_job_threshold_ms:
            raise ValueError(
                f"JOB_HEARTBEAT_INTERVAL_MS ({interval}) must be less than half of "
                f"STALE_JOB_THRESHOLD_MS ({self.stale_job_threshold_ms}): lower the interval "
                "or raise the threshold"
            )
        return self

    @property
    def heartbeat_interval_ms(self) -> int:
        """The configured interval, or a fifth of the threshold: several beats fit in it."""
        return self.job_heartbeat_interval_ms or max(1, self.stale_job_threshold_ms // 5)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.sync_cron_timezone)

    @property
    def masked_database_url(self) -> str:
        return mask_url(self.database_url.get_secret_value())


def _one_line(exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, ValueError):
            parts.append(str(cause))
        else:
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            parts.append(f"{name}: {err['msg']}")
    return "; ".join(parts)


def load_settings() -> Settings:
    """Read and validate the settings; a bad value raises one ConfigurationError line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(_one_line(exc)) from None


@cache
def get_settings() -> Settings:
    """The process-wide settings, validated on first use."""
    return load_settings()


def enabled_flag_name(job_type: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", job_type.upper()) + "_ENABLED"


def _environment() -> dict[str, str]:
    merged: dict[str, str] = {}
    if Path(ENV_FILE).is_file():
        merged.update({k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None})
    merged.update(os.environ)  # the real environment wins over .env, as pydantic-settings does
    return merged


def job_enabled(job_type: str, environ: Mapping[str, str] | None = None) -> bool:
    """The `<JOB>_ENABLED` flag; unset means enabled."""
    name = enabled_flag_name(job_type)
    if environ is not None:
        raw = environ.get(name)
    else:  # per job run: no copy of the whole environment, .env read only when it exists
        raw = os.environ.get(name)
        if raw is None and Path(ENV_FILE).is_file():
            raw = dotenv_values(ENV_FILE).get(name)
    if raw is None or raw.strip() == "":
        return True
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"{name} must be one of true/false/1/0/yes/no/on/off (any case), got {raw!r}"
    )


def validate_enabled_flags(job_types: Iterable[str]) -> None:
    """Fail at start-up, before any job runs, on any malformed enable flag."""
    env = _environment()
    for job_type in job_types:
        job_enabled(job_type, env)
