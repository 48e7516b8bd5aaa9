"""Hourly aggregates of ``spend_events``: spend by department, team and agent, by model,
and the failed requests by error."""

import dagster as dg
import duckdb
import pyarrow as pa

from assets.checks import hour_rule_specs, query_table
from assets.hour_rules import (
    HourChecks,
    cost_faults,
    hourly_totals,
    reconcile_faults,
    schema_faults,
)
from assets.metadata import RangeSummary, chunk_done, markdown_preview
from assets.partitions import hourly_asset, partition_hours
from assets.schemas import AGGREGATES, AggregateSpec
from resources.duck import Rows, connection, query_arrow
from resources.lake import LakeResource

# How each measure is computed over a group of spend_events rows.
MEASURE_SQL = {
    "cost": "CAST(sum(cost) AS DECIMAL(38, 18))",
    "prompt_tokens": "sum(prompt_tokens)",
    "completion_tokens": "sum(completion_tokens)",
    "total_tokens": "sum(total_tokens)",
    "cache_read_tokens": "sum(cache_read_tokens)",
    "cache_creation_tokens": "sum(cache_creation_tokens)",
    "requests": "count(*)",
    "failed_requests": "count(*) FILTER (WHERE failed)",
    "cache_hits": "count(*) FILTER (WHERE cache_hit)",
    "latency_p50_ms": "quantile_cont(latency_ms, 0.5)",
    "latency_p95_ms": "quantile_cont(latency_ms, 0.95)",
}


def aggregate_spend(
    events: Rows, spec: AggregateSpec, con: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    """``spec``'s measures of ``events`` per hour and group (cost summed exactly)."""
    keys = ", ".join(["usage_hour", *spec.dimensions])
    measures = ", ".join(f"{MEASURE_SQL[m]} AS {m}" for m in spec.measures)
    sql = f"""
    SELECT {keys}, {measures}
    FROM events
    {"WHERE failed" if spec.failed_only else ""}
    GROUP BY ALL
    ORDER BY {keys}
    """
    return query_arrow(con, sql, spec.schema, events=events)


# The Dagster UI's "top" table of an aggregate over the materialised range, where it has one.
TOP_QUERIES = {
    "spend_by_model": """
        SELECT provider, model, sum(cost) AS cost, sum(requests) AS requests,
               sum(failed_requests) AS failed_requests,
               sum(cache_read_tokens) AS cache_read_tokens
        FROM agg GROUP BY ALL ORDER BY cost DESC, provider, model LIMIT 10
    """,
    "request_errors": """
        SELECT error_class, error_code, sum(requests) AS requests, sum(cost) AS cost
        FROM agg GROUP BY ALL ORDER BY requests DESC, error_class, error_code LIMIT 10
    """,
}


def top_tables(name: str, aggregate: Rows) -> dict[str, dg.MetadataValue]:
    """``{"top": <markdown table>}`` for an aggregate with a top query, else nothing."""
    if name not in TOP_QUERIES:
        return {}
    return {
        "top": dg.MetadataValue.md(markdown_preview(query_table(TOP_QUERIES[name], agg=aggregate)))
    }


def _description(name: str, spec: AggregateSpec) -> str:
    measures = ", ".join(m.replace("_", " ") for m in spec.measures)
    which = "Failed requests" if spec.failed_only else "Spend"
    return f"{which} per hour by {', '.join(spec.dimensions)}: {measures}."


def aggregate_rules(spec: AggregateSpec) -> dict[str, str]:
    """The rules an aggregate checks as it writes each chunk (``assets/hour_rules.py``)."""
    which = "its failed requests" if spec.failed_only else "its requests"
    return {
        "schema_matches": "columns and types are exactly the aggregate schema by "
        + ", ".join(spec.dimensions),
        "cost_non_negative": "every cost is present and ≥ 0",
        "reconciles_with_spend_events": f"each hour's cost and requests equal spend_events' "
        f"({which}) exactly",
    }


def aggregate_faults(
    table: pa.Table, events: Rows, spec: AggregateSpec, hours: list
) -> dict[str, dict]:
    """Each rule's faulty hours among a chunk's aggregate ``table`` made from ``events``."""
    schema = schema_faults(table, spec.schema, hours)
    if schema:  # the other rules read columns that may not be there
        return {"schema_matches": schema}
    return {
        "cost_non_negative": cost_faults(table),
        "reconciles_with_spend_events": reconcile_faults(
            hourly_totals(table), hourly_totals(events, spec.failed_only), hours
        ),
    }


def _aggregate_asset(name: str, spec: AggregateSpec) -> dg.AssetsDefinition:
    rules = aggregate_rules(spec)

    @hourly_asset(
        name=name,
        deps=["spend_events"],
        group_name="aggregates",
        kinds={"duckdb", "parquet"},
        description=_description(name, spec),
        check_specs=hour_rule_specs(name, rules),
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        hours, summary, checks = partition_hours(context), RangeSummary(), HourChecks(rules)
        chunks = lake.chunks(["spend_events"], hours)
        with connection() as con:
            for number, chunk in enumerate(chunks, start=1):
                events = lake.scan("spend_events", chunk)
                table = aggregate_spend(events, spec, con)
                summary.add(table, lake.write_hours(name, table, chunk))
                checks.add(chunk, aggregate_faults(table, events, spec, chunk))
                chunk_done(context, number, len(chunks), chunk, table.num_rows)
        lake.set_holds(name, hours, checks.held())
        return summary.result(
            hours,
            check_results=checks.results(context.assets_def.key),
            **top_tables(name, lake.scan(name, hours)),
        )

    return _asset


spend_by_department, spend_by_team, spend_by_agent, spend_by_model, request_errors = (
    _aggregate_asset(name, spec) for name, spec in AGGREGATES.items()
)
