"""``spend_events``: one row per request, deduplicated across deliveries and sources."""

from collections import Counter
from collections.abc import Iterator
from functools import partial

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from assets.attribution import attribution_sql
from assets.checks import (
    check_results,
    hour_rule_specs,
    hourly_check_spec,
    share_setting,
    unless_columns_missing,
)
from assets.hour_rules import HourChecks, cost_faults, key_faults, schema_faults
from assets.metadata import RangeSummary, chunk_done
from assets.partitions import hourly_asset, partition_hours
from assets.quality_checks import (
    DEFAULT_DIVERGENCE_SHARE,
    DEFAULT_UNATTRIBUTED_SHARE,
    DIVERGENCE_SHARE_ENV,
    UNATTRIBUTED_SHARE_ENV,
    source_divergence_outcome,
    unattributed_share_outcome,
    zero_cost_outcome,
)
from assets.schemas import SPEND_EVENTS_SCHEMA
from resources.attribution import AttributionMappingResource
from resources.duck import Rows, connection, query_arrow
from resources.lake import LakeResource


# Within a source, one row per request key: LiteLLM retries and double logs repeat rows.
# The order only matters for rows that disagree; it is total, so the pick is stable. Most
# keys come once, so only the rows of repeated keys go through the (wide, sorting) window.
def _one_per_key(source: str) -> str:
    keyed = f"{source}_keyed"
    return f"""
    WITH repeated AS (
        SELECT request_key, count(*) AS deliveries FROM {keyed}
        GROUP BY request_key HAVING count(*) > 1
    )
    SELECT k.*, 1 AS deliveries
    FROM {keyed} AS k ANTI JOIN repeated AS r ON k.request_key IS NOT DISTINCT FROM r.request_key
    UNION ALL BY NAME
    SELECT k.*, r.deliveries
    FROM {keyed} AS k JOIN repeated AS r ON k.request_key IS NOT DISTINCT FROM r.request_key
    QUALIFY row_number() OVER (
        PARTITION BY k.request_key
        ORDER BY k.cost DESC, k.total_tokens DESC, k.end_time DESC, k.request_id
    ) = 1
    """


# Both sources key a request by its call id, else its request id. A row without a call id
# (older LiteLLM database rows) takes the call id the webhook sent with the same request
# id, if that id names exactly one call: otherwise one request could be keyed by call id
# in one source and by request id in the other, and count twice. Only rows without a call
# id are joined: the others are keyed as they are.
def _keyed(source: str) -> str:
    return f"""
    SELECT *, litellm_call_id AS request_key FROM {source}
    WHERE nullif(litellm_call_id, '') IS NOT NULL
    UNION ALL BY NAME
    SELECT s.*, coalesce(c.litellm_call_id, nullif(s.request_id, '')) AS request_key
    FROM {source} AS s
    LEFT JOIN webhook_call_ids AS c ON s.request_id = c.request_id
    WHERE nullif(s.litellm_call_id, '') IS NULL
    """


_MERGE_SQL = f"""
WITH webhook_call_ids AS (
    SELECT request_id, any_value(litellm_call_id) AS litellm_call_id
    FROM webhook
    WHERE nullif(request_id, '') IS NOT NULL AND nullif(litellm_call_id, '') IS NOT NULL
    GROUP BY request_id
    HAVING count(DISTINCT litellm_call_id) = 1
),
spend_logs_keyed AS ({_keyed("spend_logs")}),
webhook_keyed AS ({_keyed("webhook")}),
db AS ({_one_per_key("spend_logs")}),
wh AS ({_one_per_key("webhook")}),
merged AS (
    SELECT
        coalesce(db.request_key, wh.request_key) AS request_key,
        -- The database row is LiteLLM's record of what was spent: it wins on numbers.
        coalesce(db.usage_hour, wh.usage_hour) AS usage_hour,
        coalesce(db.request_id, wh.request_id) AS request_id,
        coalesce(db.litellm_call_id, wh.litellm_call_id) AS litellm_call_id,
        coalesce(db.start_time, wh.start_time) AS start_time,
        coalesce(db.end_time, wh.end_time) AS end_time,
        coalesce(db.status, wh.status) AS status,
        coalesce(db.call_type, wh.call_type) AS call_type,
        coalesce(db.model, wh.model) AS raw_model,
        coalesce(db.model_group, wh.model_group) AS model_group,
        coalesce(db.custom_llm_provider, wh.custom_llm_provider) AS custom_llm_provider,
        CASE WHEN db.request_key IS NOT NULL THEN db.cost ELSE wh.cost END AS cost,
        CASE WHEN db.request_key IS NOT NULL THEN db.prompt_tokens ELSE wh.prompt_tokens END
            AS prompt_tokens,
        CASE WHEN db.request_key IS NOT NULL THEN db.completion_tokens
            ELSE wh.completion_tokens END AS completion_tokens,
        CASE WHEN db.request_key IS NOT NULL THEN db.total_tokens ELSE wh.total_tokens END
            AS total_tokens,
        coalesce(db.team_id, wh.team_id) AS team_id,
        coalesce(db.team_alias, wh.team_alias) AS team_alias,
        coalesce(db.key_alias, wh.key_alias) AS key_alias,
        coalesce(db.user_id, wh.user_id) AS user_id,
        list_distinct(list_concat(coalesce(db.request_tags, []), coalesce(wh.request_tags, [])))
            AS request_tags,
        -- Headers only travel with the webhook.
        wh.header_department, wh.header_team, wh.header_agent, wh.header_tags,
        -- What went wrong and what the caches did: the database's when it says, else the
        -- webhook's; neither saying is null.
        coalesce(db.error_class, wh.error_class) AS error_class,
        coalesce(db.error_code, wh.error_code) AS error_code,
        coalesce(db.cache_hit, wh.cache_hit) AS cache_hit,
        coalesce(db.cache_read_tokens, wh.cache_read_tokens) AS cache_read_tokens,
        coalesce(db.cache_creation_tokens, wh.cache_creation_tokens) AS cache_creation_tokens,
        CASE WHEN db.request_key IS NULL THEN 'webhook'
             WHEN wh.request_key IS NULL THEN 'database' ELSE 'both' END AS source,
        coalesce(db.deliveries, 0) + coalesce(wh.deliveries, 0) AS deliveries
    FROM db FULL OUTER JOIN wh ON db.request_key = wh.request_key
),
attributed AS ({attribution_sql("merged")})
SELECT
    *,
    date_diff('microsecond', start_time, end_time) / 1000.0 AS latency_ms,
    coalesce(status, 'success') <> 'success' AS failed,
    -- "openai/gpt-4o" with provider openai is model gpt-4o; keep model_group as sent.
    coalesce(nullif(custom_llm_provider, ''), nullif(split_part(raw_model, '/', 1), raw_model))
        AS provider,
    CASE WHEN starts_with(raw_model, provider || '/') THEN raw_model[length(provider) + 2:]
         ELSE raw_model END AS model
FROM attributed
"""


def build_spend_events(
    spend_logs: Rows,
    webhook: Rows,
    mapping: pa.Table,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Merge both raw sources into one attributed row per request (``SPEND_EVENTS_SCHEMA``)."""
    return query_arrow(
        con,
        _MERGE_SQL,
        SPEND_EVENTS_SCHEMA,
        spend_logs=spend_logs,
        webhook=webhook,
        mapping=mapping,
    )


_RAW_SOURCES = ("litellm_spend_logs", "litellm_webhook_events")
_PREVIEW_COLUMNS = ["usage_hour", "department", "team", "agent", "model", "cost"]


# The rules spend_events checks as it writes each chunk (nothing is read back); an hour that
# breaks one is held back from CloudZero, the others go on (assets/hour_rules.py).
SPEND_EVENTS_RULES = {
    "schema_matches": "columns and types are exactly SPEND_EVENTS_SCHEMA's (assets/schemas.py)",
    "one_row_per_request": "every row has a request_key (call id, else request id) and no two "
    "rows share one",
    "cost_non_negative": "every request has a cost and none is negative",
}


@hourly_asset(
    deps=list(_RAW_SOURCES),
    group_name="model",
    kinds={"duckdb", "parquet"},
    description="One attributed row per LiteLLM request, deduplicated within and across sources.",
    check_specs=hour_rule_specs("spend_events", SPEND_EVENTS_RULES),
)
def spend_events(
    context: dg.AssetExecutionContext, lake: LakeResource, attribution: AttributionMappingResource
) -> dg.MaterializeResult:
    hours = partition_hours(context)
    mapping = attribution.mapping()
    summary, deliveries, sources = RangeSummary(), 0, Counter()
    checks = HourChecks(SPEND_EVENTS_RULES)
    chunks = lake.chunks(_RAW_SOURCES, hours)
    # A request's rows all fall in its start hour, so chunks of whole hours dedupe exactly
    # as one pass over the range would.
    with connection() as con:
        for number, chunk in enumerate(chunks, start=1):
            spend_logs, webhook = (lake.scan(source, chunk) for source in _RAW_SOURCES)
            events = build_spend_events(spend_logs, webhook, mapping, con)
            files = lake.write_hours("spend_events", events, chunk)
            checks.add(chunk, spend_events_faults(events, chunk))
            summary.add(events, files, events.select(_PREVIEW_COLUMNS))
            deliveries += int(pc.sum(events["deliveries"]).as_py() or 0)
            if events.num_rows:
                counts = pc.value_counts(events["attribution_source"]).to_pylist()
                sources.update({c["values"]: c["counts"] for c in counts})
            chunk_done(context, number, len(chunks), chunk, events.num_rows)
    lake.set_holds("spend_events", hours, checks.held())
    return summary.result(
        hours,
        check_results=checks.results(context.assets_def.key),
        duplicate_deliveries=deliveries - summary.rows,
        attribution_sources=dict(sources),
    )


def spend_events_faults(events: pa.Table, hours: list) -> dict[str, dict]:
    """Each rule's faulty hours among a chunk's ``events``."""
    schema = schema_faults(events, SPEND_EVENTS_SCHEMA, hours)
    if schema:  # the other rules read columns that may not be there
        return {"schema_matches": schema}
    return {"one_row_per_request": key_faults(events), "cost_non_negative": cost_faults(events)}


@dg.multi_asset_check(
    name="spend_events_quality",
    specs=[
        hourly_check_spec(
            spend_events,
            "unattributed_share",
            "Warns when more than SPEND_UNATTRIBUTED_WARN_SHARE (default 0.2) of the cost has "
            "department 'unattributed'; lists the callers to add to the mapping file.",
            blocking=False,
        ),
        hourly_check_spec(
            spend_events,
            "zero_cost_with_tokens",
            "Warns on successful requests that used tokens but cost 0 (a model missing from "
            "LiteLLM's price map, a failed cost calculation, or a cache hit); lists the models.",
            blocking=False,
        ),
        hourly_check_spec(
            spend_events,
            "webhook_database_divergence",
            "With both the webhook and LiteLLM's database on, warns on hours where more than "
            "SPEND_SOURCE_DIVERGENCE_WARN_SHARE (default 0.05) of the requests reached only one "
            "of them.",
            blocking=False,
        ),
    ],
    can_subset=True,
    description="Warnings on spend_events: they never stop the run.",
)
def spend_events_quality(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> Iterator[dg.AssetCheckResult]:
    try:
        unattributed = share_setting(UNATTRIBUTED_SHARE_ENV, DEFAULT_UNATTRIBUTED_SHARE)
        divergence = share_setting(DIVERGENCE_SHARE_ENV, DEFAULT_DIVERGENCE_SHARE)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None
    events = lake.scan("spend_events", partition_hours(context))

    rule = partial(unless_columns_missing, events, SPEND_EVENTS_SCHEMA)

    yield from check_results(
        context,
        spend_events.key,
        {
            "unattributed_share": rule(lambda: unattributed_share_outcome(events, unattributed)),
            "zero_cost_with_tokens": rule(lambda: zero_cost_outcome(events)),
            "webhook_database_divergence": rule(
                lambda: source_divergence_outcome(events, divergence)
            ),
        },
        warn=True,
    )
