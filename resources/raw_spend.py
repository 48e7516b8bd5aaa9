"""The raw spend row: the one shape every source yields (LiteLLM's database, its REST API and
the webhook landings), so the merge into ``spend_events`` is a union.

Every table carries ``usage_hour`` (UTC hour start): the hour a row belongs to and the column
the lake splits files on. Money is ``DECIMAL(38, 18)``; times are UTC timestamps.
"""

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(38, 18)

# litellm_spend_logs and litellm_webhook_events: one row per delivered record, as the
# source gave it (duplicates kept), normalised to one shape so the merge is a union.
RAW_SPEND_SCHEMA = pa.schema(
    [
        ("usage_hour", UTC_TS),
        ("request_id", pa.string()),
        ("litellm_call_id", pa.string()),
        ("start_time", UTC_TS),
        ("end_time", UTC_TS),
        ("status", pa.string()),
        ("call_type", pa.string()),
        ("model", pa.string()),
        ("model_group", pa.string()),
        ("custom_llm_provider", pa.string()),
        ("cost", MONEY),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("request_tags", pa.list_(pa.string())),
        ("team_id", pa.string()),
        ("team_alias", pa.string()),
        ("key_alias", pa.string()),
        ("user_id", pa.string()),
        ("header_department", pa.string()),
        ("header_team", pa.string()),
        ("header_agent", pa.string()),
        ("header_tags", pa.string()),
        # Missing is null, never a made-up zero: a source that does not say, did not say.
        ("error_class", pa.string()),  # e.g. RateLimitError (LiteLLM's error_information)
        ("error_code", pa.string()),  # the provider's or HTTP status code, as text
        ("cache_hit", pa.bool_()),  # LiteLLM answered from its response cache
        ("cache_read_tokens", pa.int64()),  # prompt tokens served from the provider's cache
        ("cache_creation_tokens", pa.int64()),  # prompt tokens written to it
    ]
)
