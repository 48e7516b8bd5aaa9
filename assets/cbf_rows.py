"""Spend → CloudZero Billing Format rows. Pure, no Dagster; the format itself is
``resources.cbf``'s.

``resource_spend`` sums ``spend_events`` per hour and resource (the configured dimensions);
``cbf_rows`` turns those sums into string-only CBF rows. Rows whose cleaned tag values
coincide are summed into one row, so the output has exactly one row per (hour,
``resource/id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import duckdb
import pyarrow as pa

from resources.cbf import (
    EXACT,
    LINEITEM_TYPE,
    SERVICE,
    USAGE_UNITS,
    cbf_schema,
    format_cost,
    format_hour,
    resource_id,
    tag_value,
)
from resources.duck import Rows, query_arrow
from resources.raw_spend import MONEY, UTC_TS

_MEASURES = ("cost", "total_tokens", "requests")


def resource_spend_schema(dimensions: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            ("usage_hour", UTC_TS),
            *[(d, pa.string()) for d in dimensions],
            ("cost", MONEY),
            ("total_tokens", pa.int64()),
            ("requests", pa.int64()),
        ]
    )


def resource_spend(
    events: Rows, dimensions: Sequence[str], con: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    """``spend_events`` summed per hour and resource: exact cost, tokens, requests."""
    keys = ", ".join(["usage_hour", *dimensions])
    sql = f"""
    SELECT {keys}, CAST(sum(cost) AS DECIMAL(38, 18)) AS cost,
           sum(total_tokens) AS total_tokens, count(*) AS requests
    FROM events GROUP BY ALL
    """
    return query_arrow(con, sql, resource_spend_schema(dimensions), events=events)


def _description(requests: int) -> str:
    return f"LiteLLM spend: {requests} request{'' if requests == 1 else 's'}"


def cbf_rows(spend: pa.Table, dimensions: Sequence[str]) -> pa.Table:
    """One CBF row per (hour, resource) of per-resource spend, all values strings.

    ``spend`` has ``usage_hour``, the ``dimensions`` and cost, total_tokens and requests
    (``resource_spend``'s shape, or an aggregate of the same grain). Sums are per hour and
    cleaned tag values; rows with zero cost are kept (they are real usage). Sorted by hour,
    then resource id.
    """
    missing = [c for c in ("usage_hour", *dimensions, *_MEASURES) if c not in spend.column_names]
    if missing:
        raise ValueError(f"the spend table lacks column(s) {', '.join(missing)}")
    if pa.types.is_floating(spend.schema.field("cost").type):
        raise TypeError("cost must be DECIMAL, not float: money is exact")
    columns = {c: spend[c].to_pylist() for c in ("usage_hour", *dimensions, *_MEASURES)}
    totals: dict[tuple[str, str], list] = {}
    tags: dict[str, tuple[str, ...]] = {}
    for i in range(spend.num_rows):
        hour = columns["usage_hour"][i]
        if hour is None:
            raise ValueError(f"spend row {i} has no usage_hour")
        values = tuple(tag_value(columns[d][i]) for d in dimensions)
        rid = resource_id(values)
        tags[rid] = values
        acc = totals.setdefault((format_hour(hour), rid), [Decimal(0), 0, 0])
        acc[0] = EXACT.add(acc[0], Decimal(columns["cost"][i] or 0))
        acc[1] += columns["total_tokens"][i] or 0
        acc[2] += columns["requests"][i] or 0

    rows = [
        (
            hour_text,
            LINEITEM_TYPE,
            _description(requests),
            SERVICE,
            rid,
            str(tokens),
            USAGE_UNITS,
            format_cost(cost),
            *tags[rid],
        )
        for (hour_text, rid), (cost, tokens, requests) in sorted(totals.items())
    ]
    schema = cbf_schema(dimensions)
    return pa.Table.from_arrays(
        [pa.array([r[j] for r in rows], pa.string()) for j in range(len(schema))], schema=schema
    )
