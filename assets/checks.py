"""The rules behind the lake's asset checks: pure functions over Arrow tables, no I/O.

Each rule takes the rows of the hours a run checks and returns an :class:`Outcome`: whether
the rule holds, one line saying why, plain metadata (counts, shares, thresholds) and small
tables of the worst offenders. The checks next to the assets (``events.py``,
``aggregates.py``) read the lake and call these; the two helpers at the end build their
hourly specs and turn outcomes into ``AssetCheckResult``s.

Blocking rules (a bad hour must not reach CloudZero): :func:`schema_outcome`,
:func:`unique_keys_outcome`, :func:`cost_non_negative_outcome`, :func:`reconcile_outcome`.
The warnings are in :mod:`assets.quality_checks`. Shares are exact ``Decimal`` ratios;
metadata shows them as floats.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.metadata import markdown_preview
from assets.partitions import hourly_partitions
from resources.cbf import exact_sum, format_cost
from resources.duck import Rows, connection, register

# Stages carry exact DECIMAL(38, 18) money; anything beyond this is a real difference.
RECONCILE_TOLERANCE = Decimal(0)  # sums of DECIMAL(38, 18) are exact: so is the check
TOP_OFFENDERS = 10


@dataclass(frozen=True)
class Outcome:
    """What a rule found: pass or not, why, numbers, and tables of offending rows."""

    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)  # int, float, str, bool values
    tables: dict[str, pa.Table] = field(default_factory=dict)  # shown as markdown

    def result(
        self, asset_key: dg.AssetKey, check_name: str, warn: bool = False
    ) -> dg.AssetCheckResult:
        """This outcome as Dagster's check result; ``warn`` gives WARN severity."""
        metadata: dict[str, Any] = dict(self.metadata)
        metadata |= {
            name: dg.MetadataValue.md(markdown_preview(table, TOP_OFFENDERS))
            for name, table in self.tables.items()
        }
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR,
            description=self.summary,
            metadata=metadata,
        )


def not_checked(reason: str) -> Outcome:
    """A rule that could not be evaluated counts as failed, so a blocking check still blocks."""
    return Outcome(False, f"not checked: {reason}")


def unless_columns_missing(
    table: Rows, expected: pa.Schema, rule: Callable[[], Outcome]
) -> Callable[[], Outcome]:
    """``rule``, or a failed "not checked" outcome when ``table`` lacks columns it reads.

    A column of another type does not stop the rule: ``schema_matches`` reports that.
    """
    missing = [name for name in expected.names if name not in table.column_names]
    if not missing:
        return rule
    return lambda: not_checked(f"the table lacks column(s) {', '.join(missing)}")


def share_setting(name: str, default: Decimal) -> Decimal:
    """A warning threshold from the environment: a share in [0, 1], read when a check runs."""
    text = os.getenv(name, "").strip()
    if not text:
        return default
    try:
        share = Decimal(text)
    except InvalidOperation:
        share = None
    if share is None or not share.is_finite() or not 0 <= share <= 1:
        raise ValueError(
            f"{name} must be a share between 0 and 1 (e.g. 0.2 for 20%), got {text!r}; "
            f"unset it to use the default {default}"
        )
    return share


def query_table(sql: str, params: Sequence[Any] = (), **tables: Rows) -> pa.Table:
    with connection() as con:
        for name, table in tables.items():
            register(con, name, table)
        return con.sql(sql, params=list(params) or None).to_arrow_table()


def query_records(sql: str, params: Sequence[Any] = (), **tables: Rows) -> list[dict[str, Any]]:
    return query_table(sql, params, **tables).to_pylist()


def hour_text(value: datetime) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%dT%H}:00Z"


def exact_decimal(value: Decimal | float | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def share_of(part: Decimal | float | int, whole: Decimal | float | int) -> Decimal:
    return exact_decimal(part) / exact_decimal(whole) if whole else Decimal(0)


def percent_text(share: Decimal) -> str:
    return f"{float(share):.1%}"


def money_text(value: Decimal | float | int) -> str:
    """Fixed-point text of an amount, trailing zeros trimmed (``0.000000001``, ``0``).

    Exact for the lake's decimals; a float (a table whose schema drifted) shows its repr.
    """
    return format_cost(exact_decimal(value))


# --- blocking rules -------------------------------------------------------------------------


def schema_outcome(table: Rows, expected: pa.Schema) -> Outcome:
    """Column names, order and types equal ``expected`` (nullability aside).

    A scan of files with different schemas is judged by the first one that differs.
    """
    schema = next((s for s in getattr(table, "schemas", ()) if s != expected), table.schema)
    actual = {f.name: f.type for f in schema}
    wanted = {f.name: f.type for f in expected}
    problems = [
        f"missing column {name} ({kind})" for name, kind in wanted.items() if name not in actual
    ]
    problems += [
        f"unexpected column {name} ({kind})" for name, kind in actual.items() if name not in wanted
    ]
    problems += [
        f"column {name} is {actual[name]}, expected {kind}"
        for name, kind in wanted.items()
        if name in actual and actual[name] != kind
    ]
    if not problems and schema.names != expected.names:
        problems.append("columns are out of order: " + ", ".join(schema.names))
    return Outcome(
        passed=not problems,
        summary="; ".join(problems) if problems else f"{len(expected)} columns as expected",
        metadata={"columns": len(schema), "problems": len(problems)},
    )


def unique_keys_outcome(events: Rows | Sequence[Rows], key: str = "request_key") -> Outcome:
    """Every row has a ``key`` and no two rows share one (one row per request).

    A sequence is checked chunk by chunk (each a run of whole hours, as the asset wrote
    them), so memory stays bounded on a month: a key is unique within its chunk.
    """
    chunks = list(events) if isinstance(events, Sequence) else [events]
    totals = {"rows_checked": 0, "missing_keys": 0, "distinct_keys": 0}
    found = []
    for chunk in chunks:
        [counts] = query_records(
            f"""
            SELECT count(*) AS rows_checked,
                   count(*) FILTER (WHERE nullif({key}, '') IS NULL) AS missing_keys,
                   count(DISTINCT nullif({key}, '')) AS distinct_keys
            FROM events
            """,
            events=chunk,
        )
        totals = {name: totals[name] + counts[name] for name in totals}
        found.append(
            query_table(
                f"""
                SELECT {key}, min(usage_hour) AS first_hour, max(usage_hour) AS last_hour,
                       count(*) AS rows
                FROM events WHERE nullif({key}, '') IS NOT NULL
                GROUP BY {key} HAVING count(*) > 1
                ORDER BY rows DESC, {key} LIMIT ?
                """,
                [TOP_OFFENDERS],
                events=chunk,
            )
        )
    offenders = (
        pa.concat_tables(found)
        .sort_by([("rows", "descending"), (key, "ascending")])
        .slice(0, TOP_OFFENDERS)
        if found
        else pa.table({})
    )
    keyed = totals["rows_checked"] - totals["missing_keys"]
    extra_rows = keyed - totals["distinct_keys"]
    problems = []
    if extra_rows:
        problems.append(f"{extra_rows} extra rows repeat a {key} (first: {offenders[key][0]})")
    if totals["missing_keys"]:
        problems.append(f"{totals['missing_keys']} rows have no {key}")
    return Outcome(
        passed=not problems,
        summary="; ".join(problems)
        if problems
        else f"{totals['rows_checked']} rows, one per {key}",
        metadata={**totals, "duplicate_rows": extra_rows},
        tables={"duplicates": offenders} if extra_rows else {},
    )


def cost_non_negative_outcome(table: Rows, labels: Sequence[str]) -> Outcome:
    """Every ``cost`` is present and ≥ 0; offenders are shown with their ``labels``."""
    [totals] = query_records(
        """
        SELECT count(*) AS rows_checked,
               count(*) FILTER (WHERE cost < 0) AS negative_costs,
               count(*) FILTER (WHERE cost IS NULL) AS missing_costs,
               min(cost) AS min_cost
        FROM spend
        """,
        spend=table,
    )
    columns = ", ".join(["usage_hour", *labels, "cost"])
    offenders = query_table(
        f"SELECT {columns} FROM spend WHERE cost < 0 OR cost IS NULL "
        "ORDER BY cost NULLS FIRST, usage_hour LIMIT ?",
        [TOP_OFFENDERS],
        spend=table,
    )
    problems = []
    if totals["negative_costs"]:
        problems.append(
            f"{totals['negative_costs']} negative costs (lowest {money_text(totals['min_cost'])})"
        )
    if totals["missing_costs"]:
        problems.append(f"{totals['missing_costs']} rows without a cost")
    minimum = totals.pop("min_cost")
    return Outcome(
        passed=not problems,
        summary="; ".join(problems) if problems else f"{totals['rows_checked']} costs, all ≥ 0",
        metadata={**totals, "min_cost": "" if minimum is None else money_text(minimum)},
        tables={"offenders": offenders} if problems else {},
    )


def reconcile_outcome(
    aggregate: Rows,
    events: Rows,
    hours: Iterable[datetime],
    tolerance: Decimal = RECONCILE_TOLERANCE,
    failed_only: bool = False,
) -> Outcome:
    """Per hour, the aggregate's cost equals ``spend_events``' within ``tolerance`` and its
    ``requests`` add up to the number of events (the failed ones, with ``failed_only``)."""
    by_hour = {
        row["usage_hour"]: row
        for row in query_records(
            """
            WITH agg AS (
                SELECT usage_hour, sum(cost) AS cost, sum(requests) AS requests
                FROM aggregate GROUP BY usage_hour
            ), ev AS (
                SELECT usage_hour, sum(cost) AS cost, count(*) AS requests
                FROM events WHERE failed OR NOT ? GROUP BY usage_hour
            )
            SELECT usage_hour,
                   coalesce(ev.cost, 0) AS events_cost, coalesce(agg.cost, 0) AS aggregate_cost,
                   coalesce(ev.requests, 0) AS events_requests,
                   coalesce(agg.requests, 0) AS aggregate_requests
            FROM agg FULL OUTER JOIN ev USING (usage_hour)
            """,
            [failed_only],
            aggregate=aggregate,
            events=events,
        )
    }
    checked = sorted({h.astimezone(timezone.utc) for h in hours} | set(by_hour))
    rows, largest = [], Decimal(0)
    for hour in checked:
        row = by_hour.get(hour)
        if row is None:
            continue
        difference = exact_decimal(row["aggregate_cost"]) - exact_decimal(row["events_cost"])
        largest = max(largest, abs(difference))
        if abs(difference) > tolerance or row["aggregate_requests"] != row["events_requests"]:
            rows.append(
                {
                    "hour": hour_text(hour),
                    "spend_events_cost": money_text(row["events_cost"]),
                    "aggregate_cost": money_text(row["aggregate_cost"]),
                    "difference": money_text(difference),
                    "spend_events_requests": row["events_requests"],
                    "aggregate_requests": row["aggregate_requests"],
                }
            )
    total_events = exact_sum(exact_decimal(r["events_cost"]) for r in by_hour.values())
    total_aggregate = exact_sum(exact_decimal(r["aggregate_cost"]) for r in by_hour.values())
    return Outcome(
        passed=not rows,
        summary=f"{len(rows)} of {len(checked)} hours do not reconcile with spend_events, "
        f"first {rows[0]['hour']}: {rows[0]['aggregate_cost']} vs {rows[0]['spend_events_cost']}"
        if rows
        else f"all {len(checked)} hours reconcile with spend_events (tolerance {money_text(tolerance)})",
        metadata={
            "hours_checked": len(checked),
            "hours_failing": len(rows),
            "tolerance": money_text(tolerance),
            "max_abs_difference": money_text(largest),
            "spend_events_cost": money_text(total_events),
            "aggregate_cost": money_text(total_aggregate),
        },
        tables={"failing_hours": pa.Table.from_pylist(rows)} if rows else {},
    )


# --- the Dagster side, kept to two helpers --------------------------------------------------


def hourly_check_spec(
    asset: dg.AssetsDefinition,
    name: str,
    description: str,
    blocking: bool,
    additional_deps: Sequence[str] = (),
) -> dg.AssetCheckSpec:
    """A check on ``asset``, partitioned by hour like it."""
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        description=description,
        blocking=blocking,
        additional_deps=list(additional_deps),
        partitions_def=hourly_partitions,
    )


def check_results(
    context: dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    rules: Mapping[str, Callable[[], Outcome]],
    warn: bool = False,
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the rules of the selected checks (a subset when a user runs just some)."""
    for name, rule in rules.items():
        if dg.AssetCheckKey(asset_key, name) in context.selected_asset_check_keys:
            yield rule().result(asset_key, name, warn=warn)
