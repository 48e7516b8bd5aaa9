"""The spend-log pull benchmark's Markdown report: headline, tables, setup and method."""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from collections.abc import Callable

from benchmarks.spend_logs_readers import (
    DATABASE_VARIANTS,
    PSYCOPG_ITERSIZE,
    REST_VARIANT,
    VariantRun,
)
from benchmarks.spend_logs_setup import BUSY_HOUR, Setup


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
