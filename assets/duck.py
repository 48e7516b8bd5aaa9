"""The one way this project opens DuckDB: in-process, in memory, UTC, one per step."""

import duckdb
import pyarrow as pa


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Hours are UTC everywhere; date_trunc on TIMESTAMPTZ follows the session zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


def query_arrow(
    con: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema, **tables: pa.Table
) -> pa.Table:
    """Run ``sql`` over the named Arrow ``tables`` and return it cast to ``schema``."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        result = con.sql(sql).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)
    return result.select(schema.names).cast(schema)
