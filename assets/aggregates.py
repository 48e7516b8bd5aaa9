"""Hourly spend by department, by team and by agent, from ``spend_events``."""

from collections.abc import Callable, Iterator

import dagster as dg
import duckdb
import pyarrow as pa

from assets.checks import (
    Outcome,
    check_results,
    cost_non_negative_outcome,
    hourly_check_spec,
    reconcile_outcome,
    schema_outcome,
    unless_columns_missing,
)
from assets.metadata import RangeSummary, chunk_done
from assets.partitions import hourly_asset, partition_hours
from assets.schemas import AGGREGATE_DIMENSIONS, aggregate_schema
from resources.duck import Rows, connection, query_arrow
from resources.lake import LakeResource


def aggregate_spend(
    events: Rows, dimensions: list[str], con: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    """Sum cost (exact decimal) and tokens, count requests and failures, latency p50/p95."""
    keys = ", ".join(["usage_hour", *dimensions])
    sql = f"""
    SELECT {keys},
        CAST(sum(cost) AS DECIMAL(38, 18)) AS cost,
        sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens,
        sum(total_tokens) AS total_tokens,
        count(*) AS requests,
        count(*) FILTER (WHERE failed) AS failed_requests,
        quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
        quantile_cont(latency_ms, 0.95) AS latency_p95_ms
    FROM events
    GROUP BY ALL
    ORDER BY {keys}
    """
    return query_arrow(con, sql, aggregate_schema(dimensions), events=events)


def _aggregate_asset(name: str, dimensions: list[str]) -> dg.AssetsDefinition:
    @hourly_asset(
        name=name,
        deps=["spend_events"],
        group_name="aggregates",
        kinds={"duckdb", "parquet"},
        description=f"Hourly spend, tokens, requests, failures and latency by {', '.join(dimensions)}.",
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        hours, summary = partition_hours(context), RangeSummary()
        chunks = lake.chunks(["spend_events"], hours)
        with connection() as con:
            for number, chunk in enumerate(chunks, start=1):
                table = aggregate_spend(lake.scan("spend_events", chunk), dimensions, con)
                summary.add(table, lake.write_hours(name, table, chunk))
                chunk_done(context, number, len(chunks), chunk, table.num_rows)
        return summary.result(hours)

    return _asset


spend_by_department, spend_by_team, spend_by_agent = (
    _aggregate_asset(name, dims) for name, dims in AGGREGATE_DIMENSIONS.items()
)


def _aggregate_checks(
    asset: dg.AssetsDefinition, dimensions: list[str]
) -> dg.AssetChecksDefinition:
    name = asset.key.to_user_string()

    @dg.multi_asset_check(
        name=f"{name}_integrity",
        specs=[
            hourly_check_spec(
                asset,
                "schema_matches",
                f"Columns and types are exactly the aggregate schema by {', '.join(dimensions)}.",
                blocking=True,
            ),
            hourly_check_spec(
                asset, "cost_non_negative", "Every cost is present and ≥ 0.", blocking=True
            ),
            hourly_check_spec(
                asset,
                "reconciles_with_spend_events",
                "Each hour's cost equals spend_events' within 1e-9 and its requests add up to "
                "spend_events' rows.",
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
        schema = aggregate_schema(dimensions)

        def rule(outcome: Callable[[], Outcome]) -> Callable[[], Outcome]:
            return unless_columns_missing(table, schema, outcome)

        yield from check_results(
            context,
            asset.key,
            {
                "schema_matches": lambda: schema_outcome(table, schema),
                "cost_non_negative": rule(lambda: cost_non_negative_outcome(table, dimensions)),
                "reconciles_with_spend_events": rule(
                    lambda: reconcile_outcome(table, lake.scan("spend_events", hours), hours)
                ),
            },
        )

    return _checks


spend_by_department_integrity, spend_by_team_integrity, spend_by_agent_integrity = (
    _aggregate_checks(asset, dims)
    for asset, dims in zip(
        (spend_by_department, spend_by_team, spend_by_agent),
        AGGREGATE_DIMENSIONS.values(),
        strict=True,
    )
)
