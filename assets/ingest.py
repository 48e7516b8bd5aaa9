"""Raw hourly assets: LiteLLM spend logs and webhook landings, normalised to one shape."""

from collections import Counter
from datetime import timedelta
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from assets.metadata import RangeSummary, chunk_done
from assets.partitions import hourly_asset, partition_hours
from resources.duck import connection, query_arrow
from resources.lake import LakeResource, chunk_hours, hours_between
from resources.landing import LANDED_LINE_BYTES, LandingRead, LandingZoneResource
from resources.litellm import LiteLLMSpendLogsResource
from resources.raw_spend import RAW_SPEND_SCHEMA

_WEBHOOK_SQL = """
SELECT
    -- To the millisecond, as LiteLLM's database stores "startTime" (timestamp(3) rounds),
    -- so a request near the end of an hour falls in the same hour in both sources.
    date_trunc('hour', to_timestamp(round(start_time, 3))) AS usage_hour,
    request_id,
    litellm_call_id,
    to_timestamp(round(start_time, 3)) AS start_time,
    to_timestamp(end_time) AS end_time,
    status,
    call_type,
    model,
    model_group,
    custom_llm_provider,
    CAST(response_cost AS DECIMAL(38, 18)) AS cost,
    prompt_tokens,
    completion_tokens,
    total_tokens,
    request_tags,
    team_id,
    team_alias,
    key_alias,
    user_id,
    headers."x-department" AS header_department,
    headers."x-team" AS header_team,
    headers."x-agent" AS header_agent,
    headers."x-litellm-tags" AS header_tags,
    error_class,
    error_code,
    cache_hit,
    cache_read_tokens,
    cache_creation_tokens
FROM (
    SELECT * FROM landing_files UNION ALL BY NAME SELECT * FROM landing_rows
)
"""


def webhook_events_table(
    landing: LandingRead | pa.Table, con: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    """Landed webhook records → ``RAW_SPEND_SCHEMA`` rows (every delivery kept).

    Files a ``LandingRead`` left unread are parsed by this same query.
    """
    read = landing if isinstance(landing, LandingRead) else LandingRead(landing, [])
    return query_arrow(
        con,
        _WEBHOOK_SQL,
        RAW_SPEND_SCHEMA,
        landing_files=read.unread,
        landing_rows=read.table,
    )


# A success that used tokens but cost nothing: LiteLLM's cost calculator failed (it falls back
# to 0) or the model is missing from its price map. A response-cache hit costs nothing by
# right and is not one. Shared with spend_events' zero-cost check: both count the same rows.
ZERO_COST_WITH_TOKENS = (
    "cost = 0 AND total_tokens > 0 AND status = 'success' AND NOT coalesce(cache_hit, false)"
)

# LiteLLM's known data defects, counted so they are visible; spend_events still counts
# every request once (call id first, request id as fallback).
_DEFECTS_SQL = f"""
SELECT
    count(*) FILTER (WHERE nullif(request_id, '') IS NULL) AS missing_request_id,
    count(*) FILTER (WHERE nullif(litellm_call_id, '') IS NULL) AS missing_call_id,
    count(*) - count(DISTINCT coalesce(nullif(litellm_call_id, ''), nullif(request_id, '')))
        AS duplicate_rows,
    (SELECT count(*) FROM (
        SELECT request_id FROM logs WHERE nullif(request_id, '') IS NOT NULL
        GROUP BY request_id HAVING count(DISTINCT litellm_call_id) > 1
    )) AS colliding_request_ids,
    count(*) FILTER (WHERE {ZERO_COST_WITH_TOKENS}) AS zero_cost_with_tokens,
    coalesce(list_sort(list_distinct(
        list(model) FILTER (WHERE {ZERO_COST_WITH_TOKENS})
    )), []) AS zero_cost_models
FROM logs
"""


_DEFECTS_SCHEMA = pa.schema(
    [
        (name, pa.int64())
        for name in (
            "missing_request_id",
            "missing_call_id",
            "duplicate_rows",
            "colliding_request_ids",
            "zero_cost_with_tokens",
        )
    ]
    + [("zero_cost_models", pa.list_(pa.string()))]
)


# The longest window asked of LiteLLM at once, so that a quiet month is still read in steps.
MAX_FETCH_HOURS = 24


def next_fetch_hours(rows: int, hours: int, budget: int) -> int:
    """Hours to fetch next so that about ``budget`` rows come back at the rate just seen.

    The first fetch is one hour: a busy tenant's month is never asked for at once.
    """
    if rows == 0:
        return MAX_FETCH_HOURS
    return max(1, min(MAX_FETCH_HOURS, budget * hours // rows))


def spend_log_defects(logs: pa.Table) -> dict:
    """Counts of LiteLLM's known spend-log defects in raw spend rows."""
    return query_arrow(None, _DEFECTS_SQL, _DEFECTS_SCHEMA, logs=logs).to_pylist()[0]


SPEND_LOG_SOURCES = {"database": "LiteLLM database", "api": "LiteLLM API"}


def spend_log_observation(source: str, error: str | None = None) -> dg.AssetObservation:
    """A run's word on its spend-log source: it answered, or not and why (read back by the
    check ``sources_answering``, which tells a silent source from a quiet hour)."""
    name = SPEND_LOG_SOURCES[source]
    metadata: dict[str, Any] = {"source": source, "answered": error is None}
    if error is not None:
        metadata["error"] = error
    return dg.AssetObservation(
        asset_key="litellm_spend_logs",
        description=f"{name} answered" if error is None else f"{name} did not answer: {error}",
        metadata=metadata,
    )


@hourly_asset(
    group_name="ingest",
    kinds={"postgres", "parquet"},
    description="LiteLLM_SpendLogs rows per hour, from LiteLLM's database or REST API.",
)
def litellm_spend_logs(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    litellm: LiteLLMSpendLogsResource,
) -> dg.MaterializeResult:
    hours = partition_hours(context)
    window = context.partition_time_window
    summary, counts, models, details = RangeSummary(), Counter(), set(), {}
    start, span = window.start, 1
    while start < window.end:
        end = min(start + timedelta(hours=span), window.end)
        try:
            logs = litellm.fetch_spend_logs(start, end)
        except dg.Failure as failure:
            context.log_event(spend_log_observation(litellm.source, failure.description or ""))
            raise
        found = spend_log_defects(logs.table)
        models.update(found.pop("zero_cost_models"))
        counts.update(found)
        for name, value in logs.details.items():  # API counters add up; texts are the same
            details[name] = details.get(name, 0) + value if isinstance(value, int) else value
        chunk = hours_between(start, end)
        summary.add(logs.table, lake.write_hours("litellm_spend_logs", logs.table, chunk))
        start, span = end, next_fetch_hours(logs.table.num_rows, len(chunk), lake.chunk_rows)
    if logs.source == "none":
        context.log.warning(logs.note)
    else:
        context.log_event(spend_log_observation(logs.source))
    defects = {
        **{name: counts[name] for name in _DEFECTS_SCHEMA.names[:-1]},
        "zero_cost_models": sorted(models),
    }
    if any(defects.values()):
        context.log.warning(f"LiteLLM spend-log defects (all rows kept): {defects}")
    return summary.result(
        hours,
        source=logs.source,
        source_note=logs.note,
        **{f"defects/{name}": value for name, value in defects.items()},
        **details,
    )


@hourly_asset(
    group_name="ingest",
    kinds={"duckdb", "parquet"},
    description="Webhook events landed by the receiver, one row per delivery, per event hour.",
)
def litellm_webhook_events(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    landing: LandingZoneResource,
) -> dg.MaterializeResult:
    hours = partition_hours(context)
    zone = landing.zone()
    summary, landing_files, torn_bytes, malformed = RangeSummary(), 0, 0, []
    chunks = chunk_hours(hours, zone.hour_bytes(hours), lake.chunk_rows * LANDED_LINE_BYTES)
    with connection() as con:
        for number, chunk in enumerate(chunks, start=1):
            read = zone.scan_hours(chunk)
            try:
                table = webhook_events_table(read, con)
            except duckdb.InvalidInputException:  # a bad line: find and report it, keep the rest
                read = zone.read_hours(chunk)
                table = webhook_events_table(read, con)
            summary.add(table, lake.write_hours("litellm_webhook_events", table, chunk))
            landing_files += len(read.files)
            torn_bytes += read.torn_bytes
            malformed += read.malformed
            chunk_done(context, number, len(chunks), chunk, table.num_rows)
    if torn_bytes or malformed:
        context.log.warning(
            f"skipped {torn_bytes} bytes of torn last lines and {len(malformed)} "
            f"malformed lines, first: {malformed[:1]}"
        )
    return summary.result(
        hours,
        landing_files=landing_files,
        torn_bytes=torn_bytes,
        malformed_lines=len(malformed),
    )
