"""Arrow schemas of the derived lake tables: the contract between assets, notebooks and tests.

The raw tables (``litellm_spend_logs``, ``litellm_webhook_events``) have the sources' schema,
``resources.raw_spend.RAW_SPEND_SCHEMA``.

Every table carries ``usage_hour`` (UTC hour start): the hour a row belongs to and the
column the lake splits files on. Money is ``DECIMAL(38, 18)``; times are UTC timestamps.
"""

from dataclasses import dataclass

import pyarrow as pa

from resources.raw_spend import MONEY, UTC_TS

# spend_events: one row per request, deduplicated across deliveries and sources.
SPEND_EVENTS_SCHEMA = pa.schema(
    [
        ("usage_hour", UTC_TS),
        ("request_key", pa.string()),
        ("request_id", pa.string()),
        ("litellm_call_id", pa.string()),
        ("start_time", UTC_TS),
        ("end_time", UTC_TS),
        ("latency_ms", pa.float64()),
        ("status", pa.string()),
        ("failed", pa.bool_()),
        ("call_type", pa.string()),
        ("provider", pa.string()),
        ("model", pa.string()),
        ("model_group", pa.string()),
        ("cost", MONEY),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("team_id", pa.string()),
        ("team_alias", pa.string()),
        ("key_alias", pa.string()),
        ("user_id", pa.string()),
        ("request_tags", pa.list_(pa.string())),
        ("department", pa.string()),
        ("team", pa.string()),
        ("agent", pa.string()),
        ("attribution_source", pa.string()),
        ("team_source", pa.string()),
        ("agent_source", pa.string()),
        ("source", pa.string()),
        ("deliveries", pa.int64()),
        ("error_class", pa.string()),
        ("error_code", pa.string()),
        ("cache_hit", pa.bool_()),
        ("cache_read_tokens", pa.int64()),
        ("cache_creation_tokens", pa.int64()),
    ]
)

# Every measure an aggregate can carry, and its type. Token and cache sums are null where no
# request of the group reported them (missing is null, never a made-up zero).
MEASURE_TYPES = {
    "cost": MONEY,
    "prompt_tokens": pa.int64(),
    "completion_tokens": pa.int64(),
    "total_tokens": pa.int64(),
    "cache_read_tokens": pa.int64(),
    "cache_creation_tokens": pa.int64(),
    "requests": pa.int64(),
    "failed_requests": pa.int64(),
    "cache_hits": pa.int64(),
    "latency_p50_ms": pa.float64(),
    "latency_p95_ms": pa.float64(),
}
SPEND_MEASURES = (
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "requests",
    "failed_requests",
    "latency_p50_ms",
    "latency_p95_ms",
)


@dataclass(frozen=True)
class AggregateSpec:
    """An hourly aggregate of ``spend_events``: its grain, its measures, which requests."""

    dimensions: tuple[str, ...]
    measures: tuple[str, ...] = SPEND_MEASURES
    failed_only: bool = False  # request_errors: the failed requests alone

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("usage_hour", UTC_TS),
                *[(d, pa.string()) for d in self.dimensions],
                *[(m, MEASURE_TYPES[m]) for m in self.measures],
            ]
        )


# The grain of each aggregate: a team is named within its department, an agent within its
# team, so equal names in different departments never merge; a model within its provider.
AGGREGATES = {
    "spend_by_department": AggregateSpec(("department",)),
    "spend_by_team": AggregateSpec(("department", "team")),
    "spend_by_agent": AggregateSpec(("department", "team", "agent")),
    "spend_by_model": AggregateSpec(
        ("provider", "model", "model_group"),
        (
            "cost",
            "prompt_tokens",
            "completion_tokens",
            "cache_read_tokens",
            "cache_creation_tokens",
            "requests",
            "failed_requests",
            "cache_hits",
            "latency_p50_ms",
            "latency_p95_ms",
        ),
    ),
    "request_errors": AggregateSpec(
        ("department", "team", "agent", "provider", "model", "error_class", "error_code"),
        ("requests", "cost"),
        failed_only=True,
    ),
}
