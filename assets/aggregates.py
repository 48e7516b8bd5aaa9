"""Hourly aggregates of ``spend_events``: spend by department, team and agent, by model,
and the failed requests by error."""

from collections.abc import Callable, Iterator

import dagster as dg
import duckdb
import pyarrow as pa

from assets.checks import (
    Outcome,
    check_results,
    cost_non_negative_outcome,
    hourly_check_spec,
    query_table,
    reconcile_outcome,
    schema_outcome,
    unless_columns_missing,
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


def _aggregate_asset(name: str, spec: AggregateSpec) -> dg.AssetsDefinition:
    @hourly_asset(
        name=name,
        deps=["spend_events"],
        group_name="aggregates",
        kinds={"duckdb", "parquet"},
        description=_description(name, spec),
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        hours, summary = partition_hours(context), RangeSummary()
        chunks = lake.chunks(["spend_events"], hours)
        with connection() as con:
            for number, chunk in enumerate(chunks, start=1):
                table = aggregate_spend(lake.scan("spend_events", chunk), spec, con)
                summary.add(table, lake.write_hours(name, table, chunk))
                chunk_done(context, number, len(chunks), chunk, table.num_rows)
        return summary.result(hours, **top_tables(name, lake.scan(name, hours)))

    return _asset


spend_by_department, spend_by_team, spend_by_agent, spend_by_model, request_errors = (
    _aggregate_asset(name, spec) for name, spec in AGGREGATES.items()
)


def _aggregate_checks(asset: dg.AssetsDefinition, spec: AggregateSpec) -> dg.AssetChecksDefinition:
    name = asset.key.to_user_string()

    @dg.multi_asset_check(
        name=f"{name}_integrity",
        specs=[
            hourly_check_spec(
                asset,
                "schema_matches",
                f"Columns and types are exactly the aggregate schema by {', '.join(spec.dimensions)}.",
                blocking=True,
            ),
            hourly_check_spec(
                asset, "cost_non_negative", "Every cost is present and ≥ 0.", blocking=True
            ),
            hourly_check_spec(
                asset,
                "reconciles_with_spend_events",
                "Each hour's cost and requests equal spend_events' exactly"
                + (" (its failed requests)." if spec.failed_only else "."),
                blocking=True,
                additional_deps=["spend_events"],
            ),
        ],
        can_subset=True,
        description=f"Blocking: a {name} hour with a wrong schema, a negative cost or money "
        "that does not reconcile with spend_events gets no CBF file in this run.",
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, lake: LakeResource
    ) -> Iterator[dg.AssetCheckResult]:
        hours = partition_hours(context)
        table = lake.scan(name, hours)
        schema = spec.schema

        def rule(outcome: Callable[[], Outcome]) -> Callable[[], Outcome]:
            return unless_columns_missing(table, schema, outcome)

        yield from check_results(
            context,
            asset.key,
            {
                "schema_matches": lambda: schema_outcome(table, schema),
                "cost_non_negative": rule(
                    lambda: cost_non_negative_outcome(table, spec.dimensions)
                ),
                "reconciles_with_spend_events": rule(
                    lambda: reconcile_outcome(
                        table,
                        lake.scan("spend_events", hours),
                        hours,
                        failed_only=spec.failed_only,
                    )
                ),
            },
        )

    return _checks


AGGREGATE_CHECKS = [
    _aggregate_checks(asset, spec)
    for asset, spec in zip(
        (spend_by_department, spend_by_team, spend_by_agent, spend_by_model, request_errors),
        AGGREGATES.values(),
        strict=True,
    )
]
