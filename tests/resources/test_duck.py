"""DuckDB connections: UTC, closed when their block ends, borrowed ones left open."""

import duckdb
import pyarrow as pa
import pytest

from resources.duck import borrowed, connection, query_arrow


def test_a_connection_is_utc_and_closed_when_its_block_ends():
    with connection() as con:
        assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
    with pytest.raises(duckdb.ConnectionException):
        con.sql("SELECT 1")


def test_a_borrowed_connection_stays_open_and_its_views_are_dropped():
    schema = pa.schema([("total", pa.int32())])
    with connection() as con:
        rows = pa.table({"n": [1, 2, 3]})
        result = query_arrow(con, "SELECT sum(n) AS total FROM numbers", schema, numbers=rows)
        assert result == pa.table({"total": pa.array([6], pa.int32())})
        with borrowed(con) as same:
            assert same is con
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone() == (
            0,
        )


def test_without_a_connection_a_query_opens_and_closes_its_own():
    schema = pa.schema([("n", pa.int64())])
    assert query_arrow(None, "SELECT 42 AS n", schema).to_pylist() == [{"n": 42}]
