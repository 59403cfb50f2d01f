"""purge_expired: delete imported events past their ``expires_at`` (database time)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from jobs.models import ImportedEvent
from prefect_nightly_jobs import JobContext, background_job, db_now

BATCH_SIZE = 5000


@background_job(
    "purge_expired",
    description="Delete imported events whose retention has expired, in batches.",
    retries=2,
    retry_delay_seconds=10,
)
def purge_expired(ctx: JobContext) -> None:
    purged = 0
    # Small committed batches keep row locks short on a big table; a lost lock stops the loop
    # (the framework then reports "lock lost"; what was purged stays purged, which is harmless).
    while ctx.still_held():
        expired = (
            select(ImportedEvent.id).where(ImportedEvent.expires_at < db_now()).limit(BATCH_SIZE)
        )
        result = ctx.session.execute(
            delete(ImportedEvent).where(ImportedEvent.id.in_(expired.scalar_subquery()))
        )
        deleted = cast(CursorResult[Any], result).rowcount
        ctx.session.commit()
        purged += deleted
        if deleted < BATCH_SIZE:
            break
    ctx.logger.info("purged %d expired events", purged)
