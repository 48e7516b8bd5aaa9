"""The one way this project opens DuckDB: in-process, in memory, UTC, one per step."""

import duckdb
import pyarrow as pa

from resources.lake import ParquetScan
from resources.landing import LANDING_SCHEMA, LandedFiles


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Hours are UTC everywhere; date_trunc on TIMESTAMPTZ follows the session zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


# What a query reads: rows in memory, or files DuckDB reads itself (lake Parquet or landed
# NDJSON: in parallel, only the columns the query uses, aggregating as it streams).
Rows = pa.Table | ParquetScan | LandedFiles


def register(con: duckdb.DuckDBPyConnection, name: str, rows: Rows) -> None:
    """Make ``rows`` queryable as ``name`` on ``con``."""
    if isinstance(rows, pa.Table):
        con.register(name, rows)
    elif isinstance(rows, LandedFiles):
        if rows.files:
            con.sql(f"SELECT * FROM {rows.sql()}").create_view(name, replace=True)
        else:
            con.register(name, LANDING_SCHEMA.empty_table())
    elif rows.files:
        con.read_parquet([str(f) for f in rows.files]).create_view(name, replace=True)
    else:
        con.register(name, rows.schema.empty_table())


def query_arrow(
    con: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema, **tables: Rows
) -> pa.Table:
    """Run ``sql`` over the named ``tables`` and return it cast to ``schema``."""
    for name, table in tables.items():
        register(con, name, table)
    try:
        result = con.sql(sql).to_arrow_table()
    finally:
        for name in tables:
            con.execute(f'DROP VIEW IF EXISTS "{name}"')
    return result.select(schema.names).cast(schema)
