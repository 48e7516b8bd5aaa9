"""Rows/s and peak memory of pulling one busy hour of LiteLLM's spend logs.

A throwaway PostgreSQL server (``tests.postgres``) gets ``--rows`` realistic rows, heavy
content columns included, all starting inside one UTC hour (setup: timed, not measured).
Each round reads that hour in three fresh child processes of this script, one after the
other: the fast path (``read_spend_logs``, ADBC to Arrow), a plain psycopg2 reader of the
same SQL (a named cursor iterated row by row into a list of tuples), and the REST path
(``fetch_spend_logs_api``) against a ``FakeLiteLLM`` serving ``--rest-rows`` rows from a
thread of this process. A child reports its wall time, rows, sum of spend, pages and peak
RSS above its RSS once its imports are done, so no variant inherits another's memory.
Every run must return exactly the rows and spend that were loaded.

    .venv/bin/python -m benchmarks.spend_logs_pull --output benchmarks/results/spend_logs_pull.md
    .venv/bin/python -m benchmarks.spend_logs_pull --rows 20000 --rest-rows 5000 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file rather than with -m: import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import REPO_ROOT, publish  # noqa: E402
from benchmarks.machine import cores_busy, describe_machine, sample_cpu  # noqa: E402

BUSY_HOUR = datetime(2026, 3, 2, 14, tzinfo=timezone.utc)
ONE_HOUR = timedelta(hours=1)
DATABASE_VARIANTS = ("adbc", "psycopg")
REST_VARIANT = "rest"
PSYCOPG_ITERSIZE = 10_000  # rows per round trip of the named cursor
ROW_SEED = 20260302  # token counts, hence spend, are the same every run
DISK_BYTES_PER_ROW = 6_000  # measured 4.6 KB: heap, lz4 TOAST and LiteLLM's seven indexes
DISK_SLACK_BYTES = 1 << 30
CHILD_TIMEOUT_S = 1800
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # the child's key travels in its environment, not argv
PACKAGES = {
    "database readers": ("adbc-driver-postgresql", "pyarrow", "psycopg2-binary"),
    "REST reader": ("httpx", "msgspec"),
}
CODE_UNDER_TEST = ("resources",)


class RunMismatch(RuntimeError):
    """A reader returned other rows than were loaded."""


# --- rows -------------------------------------------------------------------------------


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


# --- one variant, measured in a child process of its own ---------------------------------

# A reader: what to time, and how to get (rows, spend, pages) from its result afterwards.
Reader = tuple[Callable[[], Any], Callable[[Any], tuple[int, float, int | None]]]


def _adbc_reader(options: argparse.Namespace) -> Reader:
    import pyarrow.compute as pc

    from resources.litellm_db import read_spend_logs

    def read() -> Any:
        return read_spend_logs(options.dsn, options.hour, options.hour + ONE_HOUR)

    return read, lambda table: (table.num_rows, pc.sum(table["spend"]).as_py() or 0.0, None)


def _psycopg_reader(options: argparse.Namespace) -> Reader:
    import psycopg2

    from resources.litellm_db import spend_logs_sql

    sql = spend_logs_sql(options.hour, options.hour + ONE_HOUR)  # the reader's own text

    def read() -> tuple[list[tuple], int]:
        rows: list[tuple] = []
        conn = psycopg2.connect(options.dsn)
        try:
            with conn, conn.cursor(name="spend_logs") as cursor:  # server-side cursor
                cursor.itersize = PSYCOPG_ITERSIZE
                cursor.execute(sql)
                for row in cursor:
                    rows.append(row)
                spend_at = [column.name for column in cursor.description].index("spend")
        finally:
            conn.close()
        return rows, spend_at

    return read, lambda result: (len(result[0]), math.fsum(r[result[1]] for r in result[0]), None)


def _rest_reader(options: argparse.Namespace) -> Reader:
    import pyarrow.compute as pc

    from resources.litellm_api import fetch_spend_logs_api

    def read() -> Any:
        key = os.environ[MASTER_KEY_ENV]
        return fetch_spend_logs_api(options.url, key, options.hour, options.hour + ONE_HOUR)

    def summarise(result: Any) -> tuple[int, float, int]:
        return result.table.num_rows, pc.sum(result.table["spend"]).as_py() or 0.0, result.pages

    return read, summarise


READERS = {"adbc": _adbc_reader, "psycopg": _psycopg_reader, REST_VARIANT: _rest_reader}


@dataclass(frozen=True)
class VariantRun:
    variant: str
    round: int
    rows: int
    spend: float
    pages: int | None
    seconds: float
    baseline_mib: float  # RSS once the reader's modules are imported
    peak_mib: float
    reader_cores: float
    other_cores: float  # the PostgreSQL backend or the fake, and anything else running

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else math.nan

    @property
    def peak_growth_mib(self) -> float:
        return self.peak_mib - self.baseline_mib


def memory_mib(status: str, field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak) in MiB, from the text of ``/proc/<pid>/status``."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) / 1024  # kB
    raise ValueError(f"no {field} in the process status")


def _own_memory_mib(field: str) -> float:
    return memory_mib(Path("/proc/self/status").read_text(), field)


def _reset_peak_rss() -> None:
    # Not ru_maxrss: Linux carries it over execve, so a child would start with the peak of
    # the parent it was forked from. VmHWM belongs to this process image, and writing 5 to
    # clear_refs lowers it to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")


def measure_variant(options: argparse.Namespace) -> VariantRun:
    """Read the hour once, in this process (a child of the benchmark)."""
    read, summarise = READERS[options.variant](options)
    _reset_peak_rss()
    baseline_mib = _own_memory_mib("VmRSS")
    before, started = sample_cpu(os.getpid()), time.perf_counter()
    result = read()
    seconds = time.perf_counter() - started
    after, peak_mib = sample_cpu(os.getpid()), _own_memory_mib("VmHWM")
    rows, spend, pages = summarise(result)  # after the clock: not a reader's work
    cores = cores_busy(before, after, seconds, benchmark_cpu_seconds=0.0)
    measured = (seconds, baseline_mib, peak_mib, cores.under_test, cores.rest)
    return VariantRun(options.variant, 0, rows, spend, pages, *measured)


def run_child(variant: str, round_number: int, *args: str, env: dict | None = None) -> VariantRun:
    command = [sys.executable, "-m", "benchmarks.spend_logs_pull", "--variant", variant]
    done = subprocess.run(
        [*command, "--hour", BUSY_HOUR.isoformat(), *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} reader failed ({done.returncode}): {done.stderr[-2000:]}")
    return VariantRun(**{**json.loads(done.stdout.splitlines()[-1]), "round": round_number})


@dataclass(frozen=True)
class Expected:
    rows: int
    spend: float


def check_run(run: VariantRun, expected: Expected) -> None:
    """Every loaded row, no other: the same count, the same spend up to summation order."""
    if run.rows != expected.rows or not math.isclose(run.spend, expected.spend, rel_tol=1e-9):
        raise RunMismatch(
            f"{run.variant} round {run.round} read {run.rows} rows, spend {run.spend!r}; "
            f"expected {expected.rows} rows, spend {expected.spend!r}"
        )


# --- setup: the database ------------------------------------------------------------------


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


# --- the report -------------------------------------------------------------------------


def median(runs: list[VariantRun], variant: str, value: Callable[[VariantRun], float]) -> float:
    return statistics.median(value(run) for run in runs if run.variant == variant)


def _rate(run: VariantRun) -> float:
    return run.rows_per_second


def _growth(run: VariantRun) -> float:
    return run.peak_growth_mib


def summary(runs: list[VariantRun], rows: int, rest_rows: int) -> str:
    """The headline: both database readers, their ratios, and the REST rate (medians)."""
    fast_rate, plain_rate = (median(runs, v, _rate) for v in DATABASE_VARIANTS)
    fast_mib, plain_mib = (median(runs, v, _growth) for v in DATABASE_VARIANTS)
    return (
        f"Fast path (ADBC → Arrow): **{fast_rate:,.0f} rows/s**, peak memory "
        f"**+{fast_mib:,.0f} MiB** for {rows:,} rows; plain psycopg2 {plain_rate:,.0f} rows/s, "
        f"+{plain_mib:,.0f} MiB. Ratio adbc/psycopg: rows/s **{fast_rate / plain_rate:.2f}**, "
        f"peak memory **{fast_mib / plain_mib:.2f}**. REST path: "
        f"**{median(runs, REST_VARIANT, _rate):,.0f} rows/s** on {rest_rows:,} rows."
    )


def _medians_line(runs: list[VariantRun], variant: str) -> str:
    rows = next(run.rows for run in runs if run.variant == variant)
    values = [
        f"{median(runs, variant, _rate):,.0f}",
        f"{median(runs, variant, lambda r: r.seconds):.2f}",
        f"{median(runs, variant, _growth):,.0f}",
        f"{median(runs, variant, lambda r: r.peak_mib):,.0f}",
    ]
    return f"| {variant} | {rows:,} | " + " | ".join(values) + " |"


def _run_line(run: VariantRun) -> str:
    pages = "–" if run.pages is None else str(run.pages)
    return (
        f"| {run.variant} | {run.round} | {run.rows:,} | {run.seconds:.2f} | "
        f"{run.rows_per_second:,.0f} | {run.peak_growth_mib:,.0f} | {run.peak_mib:,.0f} | "
        f"{pages} | {run.reader_cores:.2f} | {run.other_cores:.2f} |"
    )


def tables(runs: list[VariantRun]) -> list[str]:
    every_run = "| reader | round | rows | seconds | rows/s | peak RSS growth MiB | peak RSS MiB"
    return [
        "## Medians over rounds\n",
        "| reader | rows | rows/s | seconds | peak RSS growth MiB | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
        *(_medians_line(runs, v) for v in (*DATABASE_VARIANTS, REST_VARIANT)),
        "\n## Every run\n",
        every_run + " | pages | reader cores | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *map(_run_line, runs),
    ]


def setup_lines(setup: Setup) -> list[str]:
    rows = setup.expected.rows
    return [
        "## Setup (not measured)\n",
        f"- {rows:,} rows generated and loaded with one streaming `COPY` in "
        f"{setup.load_seconds:.1f} s ({rows / setup.load_seconds:,.0f} rows/s), then "
        f"`VACUUM ANALYZE` in {setup.vacuum_seconds:.1f} s, as autovacuum would have run",
        f"- the table with its TOAST and indexes: {setup.table_bytes / 2**30:.2f} GiB on disk",
        f"- PostgreSQL alone, `EXPLAIN ANALYZE` of the same query (rows made, none sent): "
        f"{setup.server_seconds:.2f} s, {rows / setup.server_seconds:,.0f} rows/s",
    ]


WHAT_IS_MEASURED = """\
Every row of `"LiteLLM_SpendLogs"` starts in {hour:%Y-%m-%d %H:00} UTC and carries the heavy
content LiteLLM stores (`messages`, `response`, `proxy_server_request`, the whole `metadata`),
as `tests/spend_log_rows.spend_log_row` builds it; the readers leave it in the database.
**adbc** is `resources.litellm_db.read_spend_logs` for that hour (read-only session, ADBC
PostgreSQL driver, Arrow cast to `SPEND_LOG_SCHEMA`). **psycopg** runs the same
`spend_logs_sql(...)` text through psycopg2 on a named, server-side cursor with
`itersize` {itersize:,}, appending each row to a list of tuples, as a hand-written reader does.
**rest** is `resources.litellm_api.fetch_spend_logs_api` against `tests/fake_litellm.FakeLiteLLM`
serving the hour in pages of 1,000 from a thread of the benchmark process: its time includes
the fake's own serving of pre-encoded rows, with no database behind it (none of a real
proxy's `OFFSET` cost). Each run is a fresh child process: *seconds* is the wall time of the
one call, connecting included; *peak RSS growth* is the process's peak RSS (`VmHWM`) during
the call minus its RSS once the reader's modules were imported, so it is the memory of
reading and holding the result; *peak RSS* adds the interpreter and libraries (the psycopg
child imports `resources.litellm_db` for the SQL, so pyarrow too). Every run must return the
loaded row count and sum of spend. Readers alternate adbc, psycopg, rest in each of {rounds}
round(s); medians are over rounds. *reader cores* is the child's CPU time over the call,
*other cores* the rest of the machine meanwhile: the PostgreSQL backend or the fake proxy,
and anything else running."""


def render_report(
    runs: list[VariantRun], setup: Setup, options: argparse.Namespace, machine: dict[str, str]
) -> str:
    measured = WHAT_IS_MEASURED.format(
        hour=BUSY_HOUR, itersize=PSYCOPG_ITERSIZE, rounds=options.rounds
    )
    return "\n".join(
        [
            "# Pulling one busy hour of LiteLLM spend logs\n",
            summary(runs, setup.expected.rows, options.rest_rows)
            + f" Medians of {options.rounds}.\n",
            *tables(runs),
            "",
            *setup_lines(setup),
            "\n## What is measured\n",
            measured,
            "\n## Machine\n",
            *(f"- {label}: {value}" for label, value in machine.items()),
            f"- database server: {setup.server_version}",
            "\n## Command\n",
            f"```sh\n{shlex.join(sys.orig_argv)}\n```\n",
        ]
    )


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Rows/s and peak memory of the spend-log pull.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="database rows (1000000)")
    parser.add_argument("--rest-rows", type=int, default=50_000, help="REST rows (50000)")
    parser.add_argument("--rounds", type=int, default=3, help="adbc+psycopg+rest rounds (3)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--database", default="spend_logs_pull", help=argparse.SUPPRESS)
    # What a child gets: one --variant to measure, its --hour, and --dsn or --url.
    parser.add_argument("--variant", choices=sorted(READERS), help=argparse.SUPPRESS)
    parser.add_argument("--hour", type=datetime.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    for name in ("rows", "rest_rows", "rounds"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return options


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_rounds(setup: Setup, fake_url: str, rest_expected: Expected, rounds: int) -> list:
    from tests.fake_litellm import MASTER_KEY

    runs = []
    for round_number in range(1, rounds + 1):
        for variant in DATABASE_VARIANTS:
            runs.append(run_child(variant, round_number, "--dsn", setup.dsn))
            check_run(runs[-1], setup.expected)
        env = {MASTER_KEY_ENV: MASTER_KEY}
        runs.append(run_child(REST_VARIANT, round_number, "--url", fake_url, env=env))
        check_run(runs[-1], rest_expected)
        for run in runs[-3:]:
            rate, growth = run.rows_per_second, run.peak_growth_mib
            _progress(f"round {round_number} {run.variant}: {rate:,.0f} rows/s, +{growth:,.0f} MiB")
    return runs


def run_benchmark(server: Any, options: argparse.Namespace) -> str:
    """Load ``options.rows`` rows into ``server``, run every round, return the report."""
    from tests.fake_litellm import FakeLiteLLM

    machine = describe_machine(server.data_dir, PACKAGES, CODE_UNDER_TEST)
    setup = load_database(server, options.database, options.rows)
    _progress(f"loaded {setup.expected.rows:,} rows in {setup.load_seconds:.1f} s")
    rows = api_rows(options.rest_rows, BUSY_HOUR)
    rest_expected = Expected(len(rows), math.fsum(row["spend"] for row in rows))
    with FakeLiteLLM(rows) as fake:
        runs = run_rounds(setup, fake.url, rest_expected, options.rounds)
    return render_report(runs, setup, options, machine)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.variant:
        print(json.dumps(asdict(measure_variant(options))))
        return 0
    from tests.postgres import PostgresServer

    needed, free = disk_needed_bytes(options.rows), shutil.disk_usage(tempfile.gettempdir()).free
    _progress(
        f"needs ~{needed / 1e9:.1f} GB free in {tempfile.gettempdir()}: {free / 1e9:.1f} GB free"
    )
    if free < needed:
        _progress("FAILED: not enough free disk; set TMPDIR elsewhere or pass fewer --rows")
        return 2
    try:
        with PostgresServer() as server:
            report = run_benchmark(server, options)
    except RunMismatch as exc:
        _progress(f"FAILED: {exc}")
        return 1
    publish(report, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
