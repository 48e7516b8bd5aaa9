"""The plan and cost of ``spend_logs_reconciliation_sensor``'s one query per tick.

A throwaway PostgreSQL server (``tests.postgres``) gets ``--rows`` full rows of
``"LiteLLM_SpendLogs"`` (content columns included), their start times spread evenly over the
``--table-days`` days before ``TABLE_END`` (LiteLLM keeps its spend logs for a while), then
``VACUUM ANALYZE`` as autovacuum would run: timed, not measured. The sensor's window is the
default one for a tick at ``TABLE_END``: the last 7 days before the schedule's 3-hour
look-back. For ``--rounds`` rounds, alternately, the sensor's query (one aggregate per hour,
each over a range of the ``"startTime"`` index) and the straightforward one (the same
window, ``GROUP BY date_trunc('hour', "startTime")``) run under ``EXPLAIN (ANALYZE,
BUFFERS)`` with JIT compilation off, as in the sensor's session, and the fingerprints are
read once as the sensor reads them (``read_hour_fingerprints``: ADBC, read-only session),
timed with the round trip.

    .venv/bin/python -m benchmarks.reconcile_query --output benchmarks/results/reconcile_query.md
    .venv/bin/python -m benchmarks.reconcile_query --rows 20000 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks import machine_section, progress, publish
from benchmarks.machine import describe_machine

TABLE_END = datetime(2026, 3, 31, 0, 30, tzinfo=timezone.utc)  # the tick's time
DATABASE = "reconcile_query"
PACKAGES = {"database reader": ("adbc-driver-postgresql", "pyarrow")}
CODE_UNDER_TEST = ("resources", "pipelines")
# The baseline: the same fingerprints from one GROUP BY over the window's rows.
GROUPED_SQL = """
SELECT date_trunc('hour', s."startTime") AS hour, count(*) AS row_count,
       sum(round(coalesce(s.spend, 0)::text::numeric, 18))::text AS spend,
       max(coalesce(s."endTime", s."startTime")) AS last_end_time
FROM "LiteLLM_SpendLogs" AS s
WHERE s."startTime" >= TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'
  AND s."startTime" < TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'
GROUP BY 1
ORDER BY 1
"""


def start_times(rows: int, days: int) -> Iterator[datetime]:
    """``rows`` start times spread evenly over the ``days`` days before ``TABLE_END``."""
    first = TABLE_END - timedelta(days=days)
    step_ms = days * 86_400_000 / rows
    for index in range(rows):
        yield first + timedelta(milliseconds=int(index * step_ms))


def sensor_window() -> tuple[datetime, datetime]:
    """The hours a tick at ``TABLE_END`` compares, with the default settings."""
    from pipelines.schedules import DEFAULT_LOOKBACK_HOURS
    from pipelines.sensors import DEFAULT_RECONCILE_DAYS, late_data_hours

    first_partition = TABLE_END - timedelta(days=365)
    hours = late_data_hours(
        TABLE_END, DEFAULT_RECONCILE_DAYS, DEFAULT_LOOKBACK_HOURS, first_partition
    )
    return hours[0], hours[-1] + timedelta(hours=1)


@dataclass(frozen=True)
class Plan:
    """What ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` said about one execution."""

    scans: tuple[str, ...]  # of tables: "Index Scan using … on …", "Seq Scan on …", leaves up
    rows_scanned: int
    hours: int
    execution_ms: float
    shared_hit: int
    shared_read: int
    temp_written: int  # blocks a sort or hash spilled to disk

    @classmethod
    def of(cls, explained: list[dict[str, Any]]) -> Plan:
        top = explained[0]["Plan"]
        scans, rows_scanned = [], 0
        for node in _nodes(top):
            if "Relation Name" in node:  # a scan of a table (not generate_series)
                index = f" using {node['Index Name']}" if "Index Name" in node else ""
                scans.append(f"{node['Node Type']}{index} on {node['Relation Name']}")
                rows_scanned += node["Actual Rows"] * node.get("Actual Loops", 1)
        return cls(
            tuple(scans),
            rows_scanned,
            top["Actual Rows"],
            explained[0]["Execution Time"],
            top.get("Shared Hit Blocks", 0),
            top.get("Shared Read Blocks", 0),
            top.get("Temp Written Blocks", 0),
        )

    @property
    def buffers_mib(self) -> float:
        return (self.shared_hit + self.shared_read) * 8 / 1024


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for child in node.get("Plans", []):
        yield from _nodes(child)
    yield node


def explain(cursor: Any, query: str) -> tuple[Plan, str]:
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query)
    plan = Plan.of(cursor.fetchone()[0])
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
    return plan, "\n".join(line for (line,) in cursor.fetchall())


def load(server: Any, rows: int, days: int) -> tuple[str, float, float, int]:
    from benchmarks.spend_logs_setup import ROW_SEED
    from tests.spend_log_rows import TABLE, load_rows, spend_log_row

    def table_rows() -> Iterator[dict[str, Any]]:
        import random

        rng = random.Random(ROW_SEED)
        for start in start_times(rows, days):
            tokens = {
                "prompt_tokens": rng.randint(50, 4000),
                "completion_tokens": rng.randint(10, 1500),
            }
            yield spend_log_row(startTime=start, **tokens)

    dsn = server.create_database(DATABASE)
    started = time.perf_counter()
    load_rows(dsn, table_rows())
    load_s = time.perf_counter() - started
    conn = server.connect(DATABASE)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(f'VACUUM ANALYZE "{TABLE}"')
            vacuum_s = time.perf_counter() - started
            cursor.execute(f"SELECT pg_total_relation_size('\"{TABLE}\"')")
            size = cursor.fetchone()[0]
    finally:
        conn.close()
    return dsn, load_s, vacuum_s, size


@dataclass
class Measurement:
    """Everything a report says: the setup, and each round's plans and read."""

    rows: int
    table_days: int
    start: datetime
    end: datetime
    load_s: float
    vacuum_s: float
    table_bytes: int
    machine: dict[str, str]
    server_version: str = ""
    per_hour: list[Plan] = field(default_factory=list)  # the sensor's query
    grouped: list[Plan] = field(default_factory=list)
    reads_s: list[float] = field(default_factory=list)
    plan_text: str = ""


def run_benchmark(args: argparse.Namespace) -> str:
    from resources.litellm_db import SessionLimits, hour_fingerprints_sql, read_hour_fingerprints
    from tests.postgres import PostgresServer

    start, end = sensor_window()
    sensor_sql = hour_fingerprints_sql(start, end)
    grouped_sql = GROUPED_SQL.format(start=start, end=end)
    with PostgresServer() as server:
        progress(f"loading {args.rows:,} rows over {args.table_days} days")
        dsn, load_s, vacuum_s, size = load(server, args.rows, args.table_days)
        machine = describe_machine(server.data_dir, PACKAGES, CODE_UNDER_TEST)
        run = Measurement(args.rows, args.table_days, start, end, load_s, vacuum_s, size, machine)
        conn = server.connect(DATABASE)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT version()")
                run.server_version = cursor.fetchone()[0].split(" on ")[0]
                cursor.execute("SET jit = off")  # as in the sensor's session
                for round_number in range(1, args.rounds + 1):
                    progress(f"round {round_number}/{args.rounds}")
                    plan, run.plan_text = explain(cursor, sensor_sql)
                    run.per_hour.append(plan)
                    run.grouped.append(explain(cursor, grouped_sql)[0])
                    began = time.perf_counter()
                    limits = SessionLimits(jit=False)
                    fingerprints = read_hour_fingerprints(dsn, start, end, limits)
                    run.reads_s.append(time.perf_counter() - began)
        finally:
            conn.close()
    if not fingerprints.num_rows == run.per_hour[0].hours == run.grouped[0].hours:
        raise RuntimeError("the two queries and the sensor's read found different hours")
    return render(run)


def _scans(plan: Plan) -> str:
    """The plan's distinct scans, with how many times each ran."""
    counts = {scan: plan.scans.count(scan) for scan in plan.scans}
    return ", ".join(f"{scan} ×{n}" if n > 1 else scan for scan, n in counts.items())


def _median_ms(plans: list[Plan]) -> float:
    return statistics.median(p.execution_ms for p in plans)


def render(run: Measurement) -> str:
    ours, plain = run.per_hour[0], run.grouped[0]
    ours_ms, plain_ms = _median_ms(run.per_hour), _median_ms(run.grouped)
    rounds = zip(run.per_hour, run.grouped, run.reads_s, strict=True)
    lines = [
        "# Reconciliation query: one tick's fingerprints of LiteLLM_SpendLogs",
        "",
        f"{run.rows:,} rows over {run.table_days} days; the tick compares "
        f"{run.start:%Y-%m-%d %H:%M}..{run.end:%Y-%m-%d %H:%M} UTC ({ours.hours} hours, "
        f"{ours.rows_scanned:,} rows). The sensor's query, one aggregate per hour: "
        f"**{_scans(ours)}**, median **{ours_ms:,.0f} ms**, {ours.buffers_mib:,.0f} MiB of "
        f"buffers ({ours.shared_hit:,} hit, {ours.shared_read:,} read, round 1), "
        f"{ours.temp_written:,} temp blocks written. One GROUP BY over the window: "
        f"{_scans(plain)}, {plain_ms:,.0f} ms, {plain.buffers_mib:,.0f} MiB, "
        f"{plain.temp_written:,} temp blocks written. Ratio per-hour/grouped: "
        f"{ours_ms / plain_ms:.2f}. The sensor's read (ADBC, read-only session, connection "
        f"included): median {statistics.median(run.reads_s) * 1000:,.0f} ms.",
        "",
        "| round | per-hour ms | buffers hit/read | temp written | grouped ms | buffers hit/read "
        "| temp written | sensor read ms |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {i} | {a.execution_ms:,.0f} | {a.shared_hit:,}/{a.shared_read:,} | "
            f"{a.temp_written:,} | {b.execution_ms:,.0f} | {b.shared_hit:,}/{b.shared_read:,} | "
            f"{b.temp_written:,} | {read_s * 1000:,.0f} |"
            for i, (a, b, read_s) in enumerate(rounds, start=1)
        ),
        "",
        f"The sensor's query, last round (`EXPLAIN (ANALYZE, BUFFERS)`, {run.server_version}):",
        "",
        "```",
        run.plan_text,
        "```",
        "",
        f"Setup (not measured): generated and loaded with one streaming COPY in "
        f"{run.load_s:.1f} s, VACUUM ANALYZE {run.vacuum_s:.1f} s; table with indexes and TOAST "
        f"{run.table_bytes / 2**30:.2f} GiB.",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.reconcile_query --output "
        "benchmarks/results/reconcile_query.md`",
        *machine_section(run.machine),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--table-days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    publish(run_benchmark(args), args.output)


if __name__ == "__main__":
    main()
