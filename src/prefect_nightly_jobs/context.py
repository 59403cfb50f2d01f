"""What a job body receives: ``JobContext``."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from prefect_nightly_jobs.lease import Lease


class JobLogger(logging.LoggerAdapter[Any]):
    """Prefixes every message with ``[job_type]`` so a job's lines stand out in any log."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], job_type: str) -> None:
        super().__init__(logger, {})
        self.prefix = f"[{job_type}]"

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"{self.prefix} {msg}", kwargs


@dataclass(frozen=True)
class JobContext:
    """Everything a job body needs to do real work.

    ``session`` is bound to the application database; the framework commits it when the body
    returns and rolls it back when the body raises (the body may also commit in batches itself).
    ``logger`` goes through Prefect's run logger, so its lines show in the UI.
    """

    job_type: str
    period: date
    execution_id: int
    session: Session
    logger: logging.LoggerAdapter[Any]
    attempt: int = 1
    _lease: Lease | None = field(default=None, repr=False, compare=False)

    def still_held(self) -> bool:
        """False once this run's lock was lost (reaped as stale, or released): stop working."""
        return self._lease.still_held() if self._lease is not None else True
