"""The shape both LiteLLM spend-log readers (database and REST API) produce, and its
normalisation to the pipeline's raw spend rows.

``SPEND_LOG_SCHEMA`` is an allow-listed projection of ``"LiteLLM_SpendLogs"`` (LiteLLM
1.106.2 ``schema.prisma``): ids, times, model, spend, tokens, tags, team and the three
metadata values attribution uses. ``messages``, ``response``, ``proxy_server_request`` and the
rest of ``metadata`` are never part of it.
"""

from __future__ import annotations

import pyarrow as pa

from resources.duck import query_arrow
from resources.raw_spend import RAW_SPEND_SCHEMA, UTC_TS

SPEND_LOG_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("litellm_call_id", pa.string()),
        ("call_type", pa.string()),
        ("status", pa.string()),
        ("start_time", UTC_TS),  # "startTime": timestamp(3) without time zone, in UTC
        ("end_time", UTC_TS),
        ("model", pa.string()),
        ("model_group", pa.string()),
        ("custom_llm_provider", pa.string()),
        ("spend", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("request_tags", pa.string()),  # the JSON text of a list of strings
        ("team_id", pa.string()),
        ("key_alias", pa.string()),  # metadata.user_api_key_alias
        ("team_alias", pa.string()),  # metadata.user_api_key_team_alias
        ("user_id", pa.string()),  # "user", else metadata.user_api_key_user_id
        ("error_class", pa.string()),  # metadata.error_information.error_class
        ("error_code", pa.string()),  # metadata.error_information.error_code
        ("cache_hit", pa.string()),  # the cache_hit column: 'True', 'False' or ''
        ("cache_read_tokens", pa.int64()),  # metadata.usage_object (see CACHE_TOKEN_PATHS)
        ("cache_creation_tokens", pa.int64()),
    ]
)

# spend is a float8; its shortest round-trip text is what LiteLLM meant (0.1, not
# 0.1000000000000000055…), and the same text the webhook landing keeps, so both sources
# give one cost for one request.
_RAW_SQL = """
SELECT
    date_trunc('hour', start_time) AS usage_hour,
    nullif(request_id, '') AS request_id,
    nullif(litellm_call_id, '') AS litellm_call_id,
    start_time,
    coalesce(end_time, start_time) AS end_time,
    coalesce(nullif(status, ''), 'success') AS status,
    call_type,
    nullif(model, '') AS model,
    nullif(model_group, '') AS model_group,
    nullif(custom_llm_provider, '') AS custom_llm_provider,
    CAST(CAST(coalesce(spend, 0) AS VARCHAR) AS DECIMAL(38, 18)) AS cost,
    coalesce(prompt_tokens, 0) AS prompt_tokens,
    coalesce(completion_tokens, 0) AS completion_tokens,
    coalesce(total_tokens, 0) AS total_tokens,
    CASE WHEN json_valid(request_tags) AND json_type(request_tags) = 'ARRAY'
         THEN CAST(json_extract_string(request_tags, '$[*]') AS VARCHAR[])
         ELSE []::VARCHAR[] END AS request_tags,
    nullif(team_id, '') AS team_id,
    nullif(team_alias, '') AS team_alias,
    nullif(key_alias, '') AS key_alias,
    nullif(user_id, '') AS user_id,
    NULL AS header_department,
    NULL AS header_team,
    NULL AS header_agent,
    NULL AS header_tags,
    nullif(error_class, '') AS error_class,
    nullif(error_code, '') AS error_code,
    CASE lower(cache_hit) WHEN 'true' THEN true WHEN 'false' THEN false END AS cache_hit,
    cache_read_tokens,
    cache_creation_tokens
FROM logs
"""


def raw_spend_from_logs(logs: pa.Table) -> pa.Table:
    """``SPEND_LOG_SCHEMA`` rows → ``RAW_SPEND_SCHEMA`` rows (spend logs carry no headers)."""
    return query_arrow(None, _RAW_SQL, RAW_SPEND_SCHEMA, logs=logs.cast(SPEND_LOG_SCHEMA))
