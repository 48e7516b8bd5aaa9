"""The three readers of the busy hour, and one read measured in a child process of its own.

**adbc** is the fast path (``read_spend_logs``, ADBC to Arrow), **psycopg** a plain psycopg2
reader of the same SQL, **rest** the REST path (``fetch_spend_logs_api``). ``measure_variant``
times one read and records the process's CPU and its peak RSS above its RSS once the reader's
modules are imported, as a ``VariantRun``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.machine import cores_busy, sample_cpu
from benchmarks.spend_logs_setup import ONE_HOUR

DATABASE_VARIANTS = ("adbc", "psycopg")
REST_VARIANT = "rest"
PSYCOPG_ITERSIZE = 10_000  # rows per round trip of the named cursor
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # the child's key travels in its environment, not argv

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
