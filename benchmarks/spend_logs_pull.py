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
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT, progress, publish
from benchmarks.machine import describe_machine
from benchmarks.spend_logs_readers import (
    DATABASE_VARIANTS,
    MASTER_KEY_ENV,
    READERS,
    REST_VARIANT,
    VariantRun,
    measure_variant,
)
from benchmarks.spend_logs_report import render_report
from benchmarks.spend_logs_setup import (
    BUSY_HOUR,
    Expected,
    Setup,
    api_rows,
    disk_needed_bytes,
    load_database,
)

CHILD_TIMEOUT_S = 1800
PACKAGES = {
    "database readers": ("adbc-driver-postgresql", "pyarrow", "psycopg2-binary"),
    "REST reader": ("httpx", "msgspec"),
}
CODE_UNDER_TEST = ("resources",)


class RunMismatch(RuntimeError):
    """A reader returned other rows than were loaded."""


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


def check_run(run: VariantRun, expected: Expected) -> None:
    """Every loaded row, no other: the same count, the same spend up to summation order."""
    if run.rows != expected.rows or not math.isclose(run.spend, expected.spend, rel_tol=1e-9):
        raise RunMismatch(
            f"{run.variant} round {run.round} read {run.rows} rows, spend {run.spend!r}; "
            f"expected {expected.rows} rows, spend {expected.spend!r}"
        )


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
            progress(f"round {round_number} {run.variant}: {rate:,.0f} rows/s, +{growth:,.0f} MiB")
    return runs


def run_benchmark(server: Any, options: argparse.Namespace) -> str:
    """Load ``options.rows`` rows into ``server``, run every round, return the report."""
    from tests.fake_litellm import FakeLiteLLM

    machine = describe_machine(server.data_dir, PACKAGES, CODE_UNDER_TEST)
    setup = load_database(server, options.database, options.rows)
    progress(f"loaded {setup.expected.rows:,} rows in {setup.load_seconds:.1f} s")
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
    progress(
        f"needs ~{needed / 1e9:.1f} GB free in {tempfile.gettempdir()}: {free / 1e9:.1f} GB free"
    )
    if free < needed:
        progress("FAILED: not enough free disk; set TMPDIR elsewhere or pass fewer --rows")
        return 2
    try:
        with PostgresServer() as server:
            report = run_benchmark(server, options)
    except RunMismatch as exc:
        progress(f"FAILED: {exc}")
        return 1
    publish(report, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
