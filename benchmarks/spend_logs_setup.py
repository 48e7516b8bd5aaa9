"""The spend-log pull benchmark's data: rows in one busy hour, and the database loaded.

``database_rows`` makes full ``"LiteLLM_SpendLogs"`` rows (heavy content columns included)
and ``api_rows`` rows of ``/spend/logs/v2``, all starting inside ``BUSY_HOUR`` and the same
every run. ``load_database`` COPYs the database rows into a fresh database and records what
every reader must return (``Expected``) and how long the setup took: timed, not measured.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

BUSY_HOUR = datetime(2026, 3, 2, 14, tzinfo=timezone.utc)
ONE_HOUR = timedelta(hours=1)
ROW_SEED = 20260302  # token counts, hence spend, are the same every run
DISK_BYTES_PER_ROW = 6_000  # measured 4.6 KB: heap, lz4 TOAST and LiteLLM's seven indexes
DISK_SLACK_BYTES = 1 << 30


def start_time(index: int, count: int, hour: datetime) -> datetime:
    """The ``index``-th of ``count`` start times spread evenly over ``hour``, to the ms."""
    return hour + timedelta(milliseconds=index * 3_600_000 // count)


def database_rows(count: int, hour: datetime) -> Iterator[dict[str, Any]]:
    """``count`` full ``"LiteLLM_SpendLogs"`` rows in ``hour``, made lazily for ``load_rows``."""
    from tests.spend_log_rows import spend_log_row

    rng = random.Random(ROW_SEED)
    for index in range(count):
        tokens = {
            "prompt_tokens": rng.randint(50, 4000),
            "completion_tokens": rng.randint(10, 1500),
        }
        yield spend_log_row(startTime=start_time(index, count, hour), **tokens)


def api_rows(count: int, hour: datetime) -> list[dict[str, Any]]:
    """``count`` rows of ``/spend/logs/v2`` in ``hour``, each with its own id and spend."""
    from tests.fake_litellm import spend_log_row

    rng = random.Random(ROW_SEED)
    return [
        spend_log_row(
            f"chatcmpl-bench-{i:07d}", start_time(i, count, hour), spend=rng.random() / 100
        )
        for i in range(count)
    ]


def disk_needed_bytes(rows: int) -> int:
    return rows * DISK_BYTES_PER_ROW + DISK_SLACK_BYTES


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)  # "startTime" has no zone


@dataclass(frozen=True)
class Expected:
    rows: int
    spend: float


@dataclass(frozen=True)
class Setup:
    dsn: str
    expected: Expected
    load_seconds: float
    vacuum_seconds: float
    server_seconds: float  # PostgreSQL alone: EXPLAIN ANALYZE of the query, nothing sent
    table_bytes: int
    server_version: str


def _server_only_seconds(cursor: Any, start: datetime) -> float:
    from resources.litellm_db import spend_logs_sql

    query = spend_logs_sql(start, start + ONE_HOUR)
    explain = "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + query.replace("%", "%%")
    timings = []
    for _ in range(2):  # the best of two: the first may still warm the cache
        cursor.execute(explain)
        timings.append(cursor.fetchone()[0][0]["Execution Time"] / 1000)
    return min(timings)


def load_database(server: Any, database: str, rows: int) -> Setup:
    """Create ``database`` and COPY ``rows`` rows in, then VACUUM ANALYZE as autovacuum
    would: otherwise the first reader would pay for setting the new rows' hint bits."""
    from tests.spend_log_rows import TABLE, load_rows

    dsn = server.create_database(database)
    started = time.perf_counter()
    load_rows(dsn, database_rows(rows, BUSY_HOUR))
    load_seconds = time.perf_counter() - started
    start = naive_utc(BUSY_HOUR)
    conn = server.connect(database)
    try:
        conn.autocommit = True  # VACUUM cannot run in a transaction
        with conn.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(f'VACUUM ANALYZE "{TABLE}"')
            vacuum_seconds = time.perf_counter() - started
            server_seconds = _server_only_seconds(cursor, BUSY_HOUR)
            cursor.execute(
                f"SELECT count(*), sum(spend), pg_total_relation_size('\"{TABLE}\"'), "
                f'version() FROM "{TABLE}" WHERE "startTime" >= %s AND "startTime" < %s',
                (start, start + ONE_HOUR),
            )
            count, spend, table_bytes, version = cursor.fetchone()
    finally:
        conn.close()
    expected = Expected(count, spend or 0.0)
    timings = (load_seconds, vacuum_seconds, server_seconds)
    return Setup(dsn, expected, *timings, table_bytes, version.split(" on ")[0])
