"""daily_rollup: per kind, count and sum the imported events of the day that ended (the run's
period, imported by ``import_events`` just before): a complete day, never one still going on."""

from __future__ import annotations

from sqlalchemy import Date, delete, func, insert, literal, select

from jobs.models import DailyEventRollup, ImportedEvent
from prefect_nightly_jobs import JobContext, background_job


@background_job(
    "daily_rollup",
    depends_on=["import_events"],
    description="Recompute the per-kind totals of the day that ended in daily_event_rollup.",
)
def daily_rollup(ctx: JobContext) -> None:
    # Recomputed from scratch for the day, in one transaction: a re-run converges, never doubles.
    ctx.session.execute(delete(DailyEventRollup).where(DailyEventRollup.day == ctx.period))
    totals = (
        select(
            literal(ctx.period, Date()),
            ImportedEvent.kind,
            func.count(),
            func.coalesce(func.sum(ImportedEvent.amount_cents), 0),
        )
        .where(ImportedEvent.day == ctx.period)
        .group_by(ImportedEvent.kind)
    )
    columns = ["day", "kind", "event_count", "amount_cents"]
    written = ctx.session.execute(
        insert(DailyEventRollup).from_select(columns, totals).returning(DailyEventRollup.kind)
    ).all()
    ctx.logger.info(
        "rolled up %s: %d kinds (%s)",
        ctx.period.isoformat(),
        len(written),
        ", ".join(sorted(k for (k,) in written)) or "no events",
    )
