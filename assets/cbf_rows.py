"""Spend → CloudZero Billing Format rows: ``spend_by_agent`` (Arrow) in, string-only CBF rows
(Arrow) out. Pure, no Dagster; the format itself is ``resources.cbf``'s.

Rows whose cleaned tag values coincide are summed into one row, so the output has exactly one
row per (hour, ``resource/id``).
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from resources.cbf import (
    CBF_COLUMNS,
    CBF_SCHEMA,
    EXACT,
    LINEITEM_TYPE,
    SERVICE,
    USAGE_UNITS,
    format_cost,
    format_hour,
    resource_id,
    tag_value,
)

_SPEND_COLUMNS = ("usage_hour", "department", "team", "agent", "cost", "total_tokens", "requests")


def _description(requests: int) -> str:
    return f"LiteLLM spend: {requests} request{'' if requests == 1 else 's'}"


def cbf_rows(spend_by_agent: pa.Table) -> pa.Table:
    """One CBF row per (hour, resource) of a ``spend_by_agent`` table, all values strings.

    Cost, tokens and requests are summed per (hour, cleaned department/team/agent);
    rows with zero cost are kept (they are real usage). Sorted by hour, then resource id.
    """
    missing = [c for c in _SPEND_COLUMNS if c not in spend_by_agent.column_names]
    if missing:
        raise ValueError(f"spend_by_agent table lacks column(s) {', '.join(missing)}")
    columns = {c: spend_by_agent[c].to_pylist() for c in _SPEND_COLUMNS}
    totals: dict[tuple[str, str], list] = {}
    tags: dict[str, tuple[str, str, str]] = {}
    for i in range(spend_by_agent.num_rows):
        hour = columns["usage_hour"][i]
        if hour is None:
            raise ValueError(f"spend_by_agent row {i} has no usage_hour")
        triple = (
            tag_value(columns["department"][i]),
            tag_value(columns["team"][i]),
            tag_value(columns["agent"][i]),
        )
        rid = resource_id(*triple)
        tags[rid] = triple
        cost = columns["cost"][i]
        if isinstance(cost, float):
            raise TypeError("spend_by_agent.cost must be DECIMAL, not float")
        acc = totals.setdefault((format_hour(hour), rid), [Decimal(0), 0, 0])
        acc[0] = EXACT.add(acc[0], Decimal(cost or 0))
        acc[1] += columns["total_tokens"][i] or 0
        acc[2] += columns["requests"][i] or 0

    rows = []
    for (hour_text, rid), (cost, tokens, requests) in sorted(totals.items()):
        department, team, agent = tags[rid]
        rows.append(
            (
                hour_text,
                LINEITEM_TYPE,
                _description(requests),
                SERVICE,
                rid,
                str(tokens),
                USAGE_UNITS,
                format_cost(cost),
                department,
                team,
                agent,
            )
        )
    return pa.Table.from_arrays(
        [pa.array([r[j] for r in rows], pa.string()) for j in range(len(CBF_COLUMNS))],
        schema=CBF_SCHEMA,
    )
