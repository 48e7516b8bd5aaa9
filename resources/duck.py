"""The one way this project opens DuckDB: in-process, in memory, UTC, one per step, closed
when the step is done (``with connection() as con``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import duckdb
import pyarrow as pa


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(":memory:") as con:
        # Hours are UTC everywhere; date_trunc on TIMESTAMPTZ follows the session zone.
        con.execute("SET TimeZone = 'UTC'")
        yield con


@contextmanager
def borrowed(con: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """``con`` when the caller has one (a step's), else a connection of this call's own."""
    if con is not None:
        yield con
        return
    with connection() as own:
        yield own


class Scan(Protocol):
    """Files DuckDB reads itself (lake Parquet, landed NDJSON): in parallel, only the columns
    a query uses, aggregating as it streams."""

    def create_view(self, con: duckdb.DuckDBPyConnection, name: str) -> None: ...


# What a query reads: rows in memory, or files DuckDB reads itself.
Rows = pa.Table | Scan


def register(con: duckdb.DuckDBPyConnection, name: str, rows: Rows) -> None:
    """Make ``rows`` queryable as ``name`` on ``con``."""
    if isinstance(rows, pa.Table):
        con.register(name, rows)
    else:
        rows.create_view(con, name)


def query_arrow(
    con: duckdb.DuckDBPyConnection | None, sql: str, schema: pa.Schema, **tables: Rows
) -> pa.Table:
    """Run ``sql`` over the named ``tables`` and return it cast to ``schema``."""
    with borrowed(con) as active:
        for name, table in tables.items():
            register(active, name, table)
        try:
            result = active.sql(sql).to_arrow_table()
        finally:
            for name in tables:
                active.execute(f'DROP VIEW IF EXISTS "{name}"')
    return result.select(schema.names).cast(schema)
