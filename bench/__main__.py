"""``python -m bench [--quick] [--only 1,4]``: run the measurements, print one table, write
bench/results/latest.json (and latest.md). Exit 1 if any correctness check failed."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import dbs
from bench.context import Context
from bench.report import Row, environment, render_text, write

# key -> module with ``run(ctx) -> list[Row]``; one module per measurement. Run in this order
# (the ones needing the Prefect server last, so that it does not run beside the others).
MEASUREMENTS: dict[str, str] = {
    "1": "bench.lock_roundtrip",
    "4": "bench.contention",
    "5": "bench.history",
    "7": "bench.stuck_beat",
    "9": "bench.heartbeat_batch",
    "10": "bench.lock_throughput",
    "2": "bench.prefect_lock",
    "3": "bench.task_overhead",
    "8": "bench.dag_overhead",
    "6": "bench.cold_start",
    "11": "bench.scaleout",
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few iterations, to try it out")
    parser.add_argument("--only", default="", help="comma-separated keys, e.g. 1,4")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    wanted = {k.strip() for k in args.only.split(",") if k.strip()} or set(MEASUREMENTS)
    unknown = sorted(wanted - set(MEASUREMENTS))
    if unknown:
        parser.error(
            f"unknown measurement(s) {', '.join(unknown)}: choose from {list(MEASUREMENTS)}"
        )
    keys = [k for k in MEASUREMENTS if k in wanted]
    ctx = Context.make(args.quick)
    env = environment(dbs.admin_url())
    env["quick"] = ctx.quick
    rows: list[Row] = []
    failed = False
    try:
        failed = _run_all(keys, ctx, rows)
    finally:
        ctx.close()
    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows.sort(key=lambda row: row.key)
    print(render_text(rows, env))
    as_json, as_md = write(rows, env, args.out)
    print(f"\nwritten: {as_json} and {as_md}")
    return 1 if failed else 0


def _run_all(keys: list[str], ctx: Context, rows: list[Row]) -> bool:
    failed = False
    for key in keys:
        started = time.monotonic()
        print(f"[bench] {key}: {MEASUREMENTS[key]} …", file=sys.stderr, flush=True)
        try:
            run: Callable[[Context], list[Row]] = importlib.import_module(MEASUREMENTS[key]).run
            new = run(ctx)
        except Exception as err:
            traceback.print_exc()
            failed = True
            new = [Row(key=key, what=MEASUREMENTS[key], result="", status="FAILED", note=str(err))]
        for row in new:
            row.data["seconds"] = round(time.monotonic() - started, 1)
        rows += new
        print(f"[bench] {key}: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return failed


if __name__ == "__main__":
    sys.exit(main())
