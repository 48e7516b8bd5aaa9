"""The baseline of the pipeline benchmarks: one hand-written DuckDB script doing the pipeline's
work from the landing files to the same outputs.

It reads the landed NDJSON of the hours with an explicit schema, keeps one delivery per
request (the pipeline's rule), attributes department / team / agent (headers, tags, mapping
file, team alias) and writes what the pipeline stores: the requests as Parquet (the columns of
``spend_events``), the five aggregates as Parquet, and the CBF rows at the default resource
grain (department, team, agent, provider, model) as CSV. It is written independently of the
pipeline's SQL so that agreeing with it is evidence; the benchmarks check that it does. It
skips what only the pipeline does: the raw ``litellm_webhook_events`` table, the database
source and its merge, the check rules and Dagster.

Without an output dir it is the compute-only baseline: the same statements, each result
computed into memory and dropped (``spend_events`` kept as an in-memory table for the
aggregates), nothing written.

Run alone (its peak memory is measured this way)::

    .venv/bin/python -m benchmarks.duckdb_baseline <data dir> <mapping.yaml> [<output dir>]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb

from resources.attribution import load_mapping

_COLUMNS = {
    "request_id": "VARCHAR",
    "litellm_call_id": "VARCHAR",
    "call_type": "VARCHAR",
    "status": "VARCHAR",
    "start_time": "DOUBLE",
    "end_time": "DOUBLE",
    "response_cost": "VARCHAR",
    "prompt_tokens": "BIGINT",
    "completion_tokens": "BIGINT",
    "total_tokens": "BIGINT",
    "cache_hit": "BOOLEAN",
    "request_tags": "VARCHAR[]",
    "model": "VARCHAR",
    "model_group": "VARCHAR",
    "custom_llm_provider": "VARCHAR",
    "team_id": "VARCHAR",
    "team_alias": "VARCHAR",
    "key_alias": "VARCHAR",
    "user_id": "VARCHAR",
    "headers": 'STRUCT("x-department" VARCHAR, "x-team" VARCHAR, "x-agent" VARCHAR, '
    '"x-litellm-tags" VARCHAR)',
    "error_class": "VARCHAR",
    "error_code": "VARCHAR",
    "cache_read_tokens": "BIGINT",
    "cache_creation_tokens": "BIGINT",
}


def _dimension(name: str) -> str:
    def clean(expr: str) -> str:
        return f"nullif(lower(trim({expr})), '')"

    pattern = rf"(?i)^\s*(?:x-)?{name}\s*:\s*(.*?)\s*$"
    tag = (
        f"list_filter(list_transform(tags, lambda t: lower(regexp_extract(t, '{pattern}', 1))), "
        "lambda v: v <> '')[1]"
    )
    choices = [clean(f'headers."x-{name}"'), tag, clean(f"coalesce(k.{name}, t.{name})")]
    if name != "agent":
        choices.append(clean("team_alias"))
    return f"coalesce({', '.join(choices)}, 'unattributed')"


def _tag(expr: str) -> str:
    cleaned = rf"trim(regexp_replace(regexp_replace({expr}, '[\x00-\x1f\x7f-\x9f]', ' ', 'g'), '\s+', ' ', 'g'))"
    return f"coalesce(nullif(trim(left({cleaned}, 256)), ''), 'unattributed')"


REQUESTS = f"""
CREATE TEMP TABLE requests AS
WITH landed AS (
    SELECT *, coalesce(nullif(litellm_call_id, ''), nullif(request_id, '')) AS request_key,
        CAST(response_cost AS DECIMAL(38, 18)) AS cost,
        to_timestamp(round(start_time, 3)) AS started,
        list_concat(coalesce(request_tags, []),
                    coalesce(string_split(headers."x-litellm-tags", ','), [])) AS tags
    FROM read_json($files, format = 'newline_delimited', columns = $columns,
                   hive_partitioning = false)
),
one_per_request AS (
    SELECT *, count(*) OVER (PARTITION BY request_key) AS deliveries FROM landed
    QUALIFY row_number() OVER (
        PARTITION BY request_key
        ORDER BY cost DESC, total_tokens DESC, end_time DESC, request_id
    ) = 1
)
SELECT date_trunc('hour', started) AS usage_hour, request_key, request_id, litellm_call_id,
    started AS start_time, to_timestamp(end_time) AS end_time,
    date_diff('microsecond', started, to_timestamp(end_time)) / 1000.0 AS latency_ms,
    coalesce(status, 'success') AS status, coalesce(status, 'success') <> 'success' AS failed,
    call_type,
    -- "openai/gpt-4o" from provider openai is model gpt-4o
    coalesce(nullif(custom_llm_provider, ''), nullif(split_part(model, '/', 1), model))
        AS provider,
    model AS raw_model, model_group, cost, prompt_tokens, completion_tokens, total_tokens,
    team_id, team_alias, key_alias, user_id, request_tags,
    {_dimension("department")} AS department,
    {_dimension("team")} AS team,
    {_dimension("agent")} AS agent,
    deliveries, error_class, error_code, cache_hit, cache_read_tokens, cache_creation_tokens
FROM one_per_request
LEFT JOIN (SELECT * FROM mapping WHERE kind = 'key') AS k ON k.alias = key_alias
LEFT JOIN (SELECT * FROM mapping WHERE kind = 'team') AS t ON t.alias = team_alias
"""

SPEND_MEASURES = """
    CAST(sum(cost) AS DECIMAL(38, 18)) AS cost,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(total_tokens) AS total_tokens, count(*) AS requests,
    count(*) FILTER (WHERE failed) AS failed_requests,
    quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
    quantile_cont(latency_ms, 0.95) AS latency_p95_ms
"""
# Each output the pipeline stores, as the query that makes it.
OUTPUTS = {
    "spend_events": """
        SELECT * EXCLUDE (raw_model),
            CASE WHEN starts_with(raw_model, provider || '/') THEN raw_model[length(provider) + 2:]
                 ELSE raw_model END AS model
        FROM requests
    """,
    "spend_by_department": f"SELECT usage_hour, department, {SPEND_MEASURES} FROM events GROUP BY ALL",
    "spend_by_team": f"SELECT usage_hour, department, team, {SPEND_MEASURES} FROM events GROUP BY ALL",
    "spend_by_agent": f"""
        SELECT usage_hour, department, team, agent, {SPEND_MEASURES} FROM events GROUP BY ALL
    """,
    "spend_by_model": """
        SELECT usage_hour, provider, model, model_group,
            CAST(sum(cost) AS DECIMAL(38, 18)) AS cost, sum(prompt_tokens) AS prompt_tokens,
            sum(completion_tokens) AS completion_tokens,
            sum(cache_read_tokens) AS cache_read_tokens,
            sum(cache_creation_tokens) AS cache_creation_tokens, count(*) AS requests,
            count(*) FILTER (WHERE failed) AS failed_requests,
            count(*) FILTER (WHERE cache_hit) AS cache_hits,
            quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
            quantile_cont(latency_ms, 0.95) AS latency_p95_ms
        FROM events GROUP BY ALL
    """,
    "request_errors": """
        SELECT usage_hour, department, team, agent, provider, model, error_class, error_code,
            count(*) AS requests, CAST(sum(cost) AS DECIMAL(38, 18)) AS cost
        FROM events WHERE failed GROUP BY ALL
    """,
}
CBF = f"""
WITH resources AS (
    SELECT strftime(usage_hour, '%Y-%m-%dT%H:00:00Z') AS hour,
        {_tag("department")} AS d, {_tag("team")} AS t, {_tag("agent")} AS a,
        {_tag("provider")} AS p, {_tag("model")} AS m,
        sum(cost) AS cost, sum(total_tokens) AS tokens, count(*) AS requests
    FROM events GROUP BY ALL
)
SELECT hour AS "time/usage_start", 'Usage' AS "lineitem/type",
    'LiteLLM spend: ' || requests || ' request' || CASE WHEN requests = 1 THEN '' ELSE 's' END
        AS "lineitem/description",
    'LiteLLM' AS "resource/service",
    'litellm/' || url_encode(d) || '/' || url_encode(t) || '/' || url_encode(a) || '/'
        || url_encode(p) || '/' || url_encode(m) AS "resource/id",
    CAST(tokens AS VARCHAR) AS "usage/amount", 'tokens' AS "usage/units",
    CASE WHEN cost = 0 THEN '0' ELSE rtrim(rtrim(CAST(cost AS VARCHAR), '0'), '.') END
        AS "cost/cost",
    d AS "resource/tag:department", t AS "resource/tag:team", a AS "resource/tag:agent",
    p AS "resource/tag:provider", m AS "resource/tag:model"
FROM resources ORDER BY hour, "resource/id"
"""


def landing_files(data_dir: Path) -> list[str]:
    return sorted(str(p) for p in (data_dir / "landing" / "litellm_webhook").glob("*/*/*.ndjson"))


def run_baseline(data_dir: Path, mapping_file: Path, out: Path | None) -> float:
    """Write every output under ``out`` (or, with ``out`` None, compute each and drop it);
    returns the seconds it took (connection included)."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with duckdb.connect(":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("mapping", load_mapping(mapping_file))
        con.execute(REQUESTS, {"files": landing_files(data_dir), "columns": _COLUMNS})
        for name, sql in OUTPUTS.items():
            if out is None and name == "spend_events":
                con.execute(f"CREATE TEMP TABLE events AS {sql}")
            elif out is None:
                con.sql(sql).to_arrow_table()
            else:
                con.execute(
                    f"COPY ({sql}) TO '{out / name}.parquet' (FORMAT parquet, COMPRESSION zstd)"
                )
                if name == "spend_events":
                    con.execute(f"CREATE VIEW events AS SELECT * FROM '{out / name}.parquet'")
        if out is None:
            con.sql(CBF).to_arrow_table()
        else:
            con.execute(f"COPY ({CBF}) TO '{out / 'cbf.csv'}' (HEADER, DELIMITER ',')")
    return time.perf_counter() - started


if __name__ == "__main__":
    output = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    seconds = run_baseline(Path(sys.argv[1]), Path(sys.argv[2]), output)
    print(json.dumps({"seconds": seconds}))
