"""Hourly spend by department, by team and by agent, from ``spend_events``."""

import dagster as dg
import pyarrow as pa

from assets.duck import connect, query_arrow
from assets.metadata import table_result
from assets.schemas import AGGREGATE_DIMENSIONS, aggregate_schema
from pipelines.partitions import hourly_asset, partition_hours
from resources.lake import LakeResource


def aggregate_spend(events: pa.Table, dimensions: list[str]) -> pa.Table:
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
    return query_arrow(connect(), sql, aggregate_schema(dimensions), events=events)


def _aggregate_asset(name: str, dimensions: list[str]) -> dg.AssetsDefinition:
    @hourly_asset(
        name=name,
        deps=["spend_events"],
        group_name="aggregates",
        kinds={"duckdb", "parquet"},
        description=f"Hourly spend, tokens, requests, failures and latency by {', '.join(dimensions)}.",
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        hours = partition_hours(context)
        table = aggregate_spend(lake.read_hours("spend_events", hours), dimensions)
        files = lake.write_hours(name, table, hours)
        return table_result(table, hours, files)

    return _asset


spend_by_department, spend_by_team, spend_by_agent = (
    _aggregate_asset(name, dims) for name, dims in AGGREGATE_DIMENSIONS.items()
)
