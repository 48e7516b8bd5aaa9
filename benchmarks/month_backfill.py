"""A month's backfill as one run, against one run per partition; and memory against range.

Setup (not measured): April 2026, 720 hours × ``--events-per-hour`` unique requests of
real-shaped webhook traffic (``benchmarks/spend_data.land_month``: one day generated and
landed through ``LandingZone.write_events``, the other 29 days copies of it shifted by
whole days with unique ids).

Measured, each a real ``dagster job execute -j hourly_spend_job`` CLI run (partition range
tags) on its own fresh instance:

1. **single run**: the whole month as one run, as a single-run backfill from the UI runs it;
2. **one run per partition**: ``--slice`` hours spread evenly over the month, each its own
   run, as a backfill without a single-run policy would launch them. The
   month's cost is extrapolated as 720 × the mean run, and the spread is reported;
3. **memory against range**: the peak memory of a 24-hour range run, against the month's.

    .venv/bin/python -m benchmarks.month_backfill --output benchmarks/results/month_backfill.md
    .venv/bin/python -m benchmarks.month_backfill --events-per-hour 500 --slice 2   # quick
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks import machine_section, publish
from benchmarks.machine import describe_machine
from benchmarks.pipeline_run import (
    RunMeasure,
    add_work_options,
    materialize,
    pipeline_environment,
    work_dir,
)
from benchmarks.spend_data import Landed, land_month
from resources.cbf import cbf_hour_key
from resources.duck import connection

MONTH_START = datetime(2026, 4, 1, tzinfo=timezone.utc)
HOURS = 720
DAY_HOURS = 24
START_DATE = "2026-04-01"
PACKAGES = {"pipeline stack": ["dagster", "duckdb", "pyarrow"]}
CODE_UNDER_TEST = ["assets", "resources", "pipelines", "benchmarks"]
TARGETS = {"month_seconds": 180.0, "speedup": 10.0, "memory_ratio": 1.5}


def _run(
    work: Path, data_dir: Path, label: str, first: datetime, last: datetime, postgres=None
) -> RunMeasure:
    home = work / f"home-{label}"
    shutil.rmtree(home, ignore_errors=True)  # a fresh instance for every run
    env = pipeline_environment(data_dir, home, START_DATE, postgres)
    run = materialize(env, first, last)
    print(
        f"{label}: wall {run.wall_seconds:.1f} s, compute {run.compute_seconds:.1f} s, "
        f"peak {run.peak_rss_mib:,.0f} MiB",
        file=sys.stderr,
    )
    return run


def landed_month(data_dir: Path, events_per_hour: int) -> Landed:
    """Land the month, or reuse what an earlier run with ``--work-dir`` landed."""
    record = data_dir / "landed.json"
    if record.exists():
        earlier = json.loads(record.read_text())
        if earlier["events_per_hour"] != events_per_hour:
            raise SystemExit(f"{data_dir} holds {earlier['events_per_hour']} events per hour")
        return Landed(**earlier["landed"])
    landed = land_month(data_dir, MONTH_START, HOURS, events_per_hour)
    record.write_text(json.dumps({"events_per_hour": events_per_hour, "landed": asdict(landed)}))
    return landed


def verify(data_dir: Path, landed: Landed) -> None:
    """Every request of the month is one spend_events row, and every hour has a CBF file."""
    with connection() as con:
        (events,) = con.execute(
            "SELECT count(*) FROM read_parquet($files)",
            {"files": str(data_dir / "lake" / "spend_events" / "*" / "*" / "*.parquet")},
        ).fetchone()
    hours = [MONTH_START + timedelta(hours=i) for i in range(HOURS)]
    missing = [h for h in hours if not (data_dir / cbf_hour_key(h)).exists()]
    if events != landed.requests or missing:
        raise RuntimeError(
            f"spend_events has {events} rows for {landed.requests} requests; "
            f"{len(missing)} hours lack a CBF file"
        )


def slice_hours(count: int) -> list[datetime]:
    """``count`` hours spread evenly over the month, at different hours of the day."""
    step = HOURS // count
    return [MONTH_START + timedelta(hours=i * step + i % DAY_HOURS) for i in range(count)]


def render(
    command: str,
    machine: dict[str, str],
    landed: Landed,
    month: RunMeasure,
    day: RunMeasure,
    per_partition: list[tuple[datetime, RunMeasure]],
) -> str:
    walls = [r.wall_seconds for _, r in per_partition]
    mean = statistics.mean(walls)
    extrapolated = HOURS * mean
    speedup = extrapolated / month.wall_seconds
    memory_ratio = month.peak_rss_mib / day.peak_rss_mib

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        "# A month's backfill, and memory against the range",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Command: `{command}`",
        "",
        f"Landed for April 2026 ({HOURS} hours): {landed.requests:,} requests, "
        f"{landed.deliveries:,} deliveries in {landed.files:,} files, "
        f"{landed.bytes / 1e9:,.2f} GB of NDJSON.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| month as one run, CLI wall time | **{month.wall_seconds:.1f} s** (Dagster run "
        f"{month.run_seconds:.1f} s, steps {month.compute_seconds:.1f} s) | ≤ 180 s: "
        f"{verdict(month.wall_seconds <= TARGETS['month_seconds'])} |",
        f"| one run per partition, {len(per_partition)} of {HOURS} hours measured | mean "
        f"{mean:.2f} s per run (min {min(walls):.2f}, max {max(walls):.2f}) → "
        f"{HOURS} × {mean:.2f} s = **{extrapolated / 60:.1f} min** | – |",
        f"| speed-up of one run over one run per partition | **{speedup:.0f}×** | ≥ 10×: "
        f"{verdict(speedup >= TARGETS['speedup'])} |",
        f"| peak RSS, 720-hour run / 24-hour run | {month.peak_rss_mib:,.0f} MiB / "
        f"{day.peak_rss_mib:,.0f} MiB = **{memory_ratio:.2f}** | < 1.5: "
        f"{verdict(memory_ratio < TARGETS['memory_ratio'])} |",
        "",
        "| run | hours | CLI wall s | Dagster run s | step compute s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
        f"| month, one run | {HOURS} | {month.wall_seconds:.1f} | {month.run_seconds:.1f} | "
        f"{month.compute_seconds:.1f} | {month.peak_rss_mib:,.0f} |",
        f"| first day, one run | {DAY_HOURS} | {day.wall_seconds:.1f} | {day.run_seconds:.1f} "
        f"| {day.compute_seconds:.1f} | {day.peak_rss_mib:,.0f} |",
    ]
    for hour, run in per_partition:
        lines.append(
            f"| {hour:%Y-%m-%d %H}:00 alone | 1 | {run.wall_seconds:.2f} | "
            f"{run.run_seconds:.2f} | {run.compute_seconds:.2f} | {run.peak_rss_mib:,.0f} |"
        )
    lines += ["", "Step compute time of the month run:", "", "| step | s |", "|---|---|"]
    for key, seconds in sorted(month.step_seconds.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {key} | {seconds:.1f} |")
    lines += machine_section(machine)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-hour", type=int, default=10_000)
    parser.add_argument("--slice", type=int, default=6, help="partitions run one by one")
    parser.add_argument(
        "--instance",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="sqlite: deploy/dagster.local.yaml as make demo; postgres: deploy/dagster.yaml "
        "on a throwaway PostgreSQL server (tests.postgres)",
    )
    add_work_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    last = MONTH_START + timedelta(hours=HOURS - 1)
    with work_dir(options.work_dir, "month-backfill-") as work:
        data_dir = work / "data"
        print(f"landing {HOURS} hours in {data_dir} ...", file=sys.stderr)
        landed = landed_month(data_dir, options.events_per_hour)
        machine = describe_machine(data_dir, PACKAGES, CODE_UNDER_TEST)
        with ExitStack() as stack:
            postgres = None
            if options.instance == "postgres":
                from tests.postgres import PostgresServer

                postgres = stack.enter_context(PostgresServer())
            for output in ("lake", "cbf"):  # every run starts from the landing alone
                shutil.rmtree(data_dir / output, ignore_errors=True)
            month = _run(work, data_dir, "month", MONTH_START, last, postgres)
            verify(data_dir, landed)
            day_end = MONTH_START + timedelta(hours=23)
            day = _run(work, data_dir, "day", MONTH_START, day_end, postgres)
            per_partition = [
                (hour, _run(work, data_dir, f"{hour:%d-%H}", hour, hour, postgres))
                for hour in slice_hours(options.slice)
            ]
    machine["Dagster instance"] = (
        "deploy/dagster.yaml on PostgreSQL (tests.postgres, 127.0.0.1)"
        if options.instance == "postgres"
        else "deploy/dagster.local.yaml (SQLite, as make demo)"
    )
    report = render(shlex.join(sys.orig_argv), machine, landed, month, day, per_partition)
    publish(report, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
