"""The spend-log pull benchmark's pure helpers, and one tiny run of the whole script path.

Nothing here asserts a speed: the smoke run only proves the benchmark still works end to end.
"""

import math
from datetime import datetime, timedelta, timezone

import pytest

from benchmarks.spend_logs_pull import RunMismatch, check_run, parse_args, run_benchmark
from benchmarks.spend_logs_readers import VariantRun, memory_mib
from benchmarks.spend_logs_report import summary
from benchmarks.spend_logs_setup import (
    BUSY_HOUR,
    Expected,
    api_rows,
    database_rows,
    disk_needed_bytes,
    start_time,
)

HOUR = datetime(2026, 3, 2, 14, tzinfo=timezone.utc)


def variant_run(
    variant: str, rows: int, seconds: float, growth_mib: float, spend: float = 1.5
) -> VariantRun:
    return VariantRun(variant, 1, rows, spend, None, seconds, 100.0, 100.0 + growth_mib, 1.0, 0.5)


def test_start_times_spread_over_the_one_hour_to_the_millisecond():
    times = [start_time(i, 7, HOUR) for i in range(7)]
    assert times[0] == HOUR and times == sorted(times)
    assert all(HOUR <= t < HOUR + timedelta(hours=1) for t in times)
    assert all(t.microsecond % 1000 == 0 for t in times)
    assert start_time(999_999, 1_000_000, HOUR) < HOUR + timedelta(hours=1)


def test_database_rows_are_full_rows_in_the_hour_and_the_same_every_run():
    rows = list(database_rows(50, HOUR))
    assert len(rows) == 50 == len({row["request_id"] for row in rows})
    assert all(HOUR <= row["startTime"] < HOUR + timedelta(hours=1) for row in rows)
    for heavy in ("messages", "response", "proxy_server_request", "metadata"):
        assert all(row[heavy] for row in rows)
    again = list(database_rows(50, HOUR))
    assert [r["spend"] for r in again] == [r["spend"] for r in rows]
    assert len({row["total_tokens"] for row in rows}) > 1


def test_api_rows_have_their_own_ids_and_start_in_the_hour():
    rows = api_rows(30, HOUR)
    assert len({row["request_id"] for row in rows}) == 30
    starts = [datetime.fromisoformat(row["startTime"]) for row in rows]
    assert all(HOUR <= t < HOUR + timedelta(hours=1) for t in starts)
    assert [r["spend"] for r in api_rows(30, HOUR)] == [r["spend"] for r in rows]


def test_disk_needed_grows_with_rows_and_covers_a_million_generously():
    assert disk_needed_bytes(1_000_000) > 4.6e9  # what a million rows measured on disk
    assert disk_needed_bytes(20_000) < disk_needed_bytes(1_000_000)


def test_memory_mib_reads_a_field_of_proc_status_in_mib():
    status = "Name:\tpython\nVmHWM:\t  524288 kB\nVmRSS:\t  102400 kB\n"
    assert memory_mib(status, "VmHWM") == 512.0
    assert memory_mib(status, "VmRSS") == 100.0
    with pytest.raises(ValueError, match="no VmSwap"):
        memory_mib(status, "VmSwap")


def test_check_run_allows_summation_order_but_not_a_missing_row():
    expected = Expected(rows=3, spend=0.1 + 0.2 + 0.3)
    check_run(variant_run("adbc", 3, 1.0, 1.0, spend=0.3 + 0.2 + 0.1), expected)
    with pytest.raises(RunMismatch, match="read 2 rows"):
        check_run(variant_run("psycopg", 2, 1.0, 1.0, spend=0.6), expected)


def test_rates_memory_growth_and_the_headline_ratios():
    runs = [
        variant_run("adbc", 1000, 0.5, 20.0),
        variant_run("psycopg", 1000, 2.0, 200.0),
        variant_run("rest", 500, 1.0, 5.0),
    ]
    assert runs[0].rows_per_second == 2000.0 and runs[0].peak_growth_mib == 20.0
    assert math.isnan(variant_run("adbc", 10, 0.0, 0.0).rows_per_second)
    headline = summary(runs, rows=1000, rest_rows=500)
    assert "**2,000 rows/s**" in headline and "+20 MiB" in headline
    assert "rows/s **4.00**" in headline and "peak memory **0.10**" in headline
    assert "**500 rows/s** on 500 rows" in headline


def test_the_whole_benchmark_runs_on_a_few_hundred_rows(postgres_server):
    options = parse_args(["--rows", "300", "--rest-rows", "200", "--rounds", "1"])
    options.database = "spend_logs_pull_smoke"
    report = run_benchmark(postgres_server, options)
    assert report.startswith("# Pulling one busy hour of LiteLLM spend logs")
    for line in ("| adbc | 300 |", "| psycopg | 300 |", "| rest | 200 |", "| rest | 1 | 200 |"):
        assert line in report
    assert f"{BUSY_HOUR:%Y-%m-%d %H:00} UTC" in report
    assert "- database server: PostgreSQL" in report
