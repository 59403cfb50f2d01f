"""The nightly summary as a markdown table (published as a Prefect artifact)."""

from __future__ import annotations

from prefect_nightly_jobs.outcome import NightlyReport

ARTIFACT_KEY = "nightly-report"


def _cell(text: str) -> str:
    # A table cell is one line, and a pipe would end it early.
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(report: NightlyReport) -> str:
    lines = [
        f"### Nightly jobs for {report.period.isoformat()}",
        "",
        # The reason last: a long error must not push the execution id off a narrow screen.
        "| job | status | execution id | duration | reason / error |",
        "|---|---|---:|---:|---|",
    ]
    for o in report.outcomes:
        execution = str(o.execution_id) if o.execution_id is not None else "-"
        status = f"{o.status} ({o.skip_kind})" if o.skip_kind else str(o.status)
        lines.append(
            f"| {_cell(o.job_type)} | {status} | {execution} | {o.duration_s:.2f}s | "
            f"{_cell(o.reason or '')} |"
        )
    lines += ["", report.summary()]
    return "\n".join(lines)
