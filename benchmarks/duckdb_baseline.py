"""The baseline of the pipeline benchmarks: one hand-written DuckDB query, landing → CBF.

It reads the landed NDJSON of the hours with an explicit schema, keeps one delivery per
request (the pipeline's rule), attributes department / team / agent (headers, tags,
mapping file, team alias), sums the three aggregates with ``GROUPING SETS`` and formats
CBF rows at the default resource grain (department, team, agent, provider, model), all in
one statement that writes nothing. It is written independently of the
pipeline's SQL so that agreeing with it is evidence; the benchmarks check that it does.

Run alone (its peak memory is measured this way)::

    .venv/bin/python -m benchmarks.duckdb_baseline <data dir> <mapping.yaml>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from resources.attribution import load_mapping

_COLUMNS = {
    "request_id": "VARCHAR",
    "litellm_call_id": "VARCHAR",
    "status": "VARCHAR",
    "start_time": "DOUBLE",
    "end_time": "DOUBLE",
    "response_cost": "VARCHAR",
    "prompt_tokens": "BIGINT",
    "completion_tokens": "BIGINT",
    "total_tokens": "BIGINT",
    "request_tags": "VARCHAR[]",
    "model": "VARCHAR",
    "custom_llm_provider": "VARCHAR",
    "team_alias": "VARCHAR",
    "key_alias": "VARCHAR",
    "headers": 'STRUCT("x-department" VARCHAR, "x-team" VARCHAR, "x-agent" VARCHAR, '
    '"x-litellm-tags" VARCHAR)',
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


SQL = f"""
WITH landed AS (
    SELECT coalesce(nullif(litellm_call_id, ''), nullif(request_id, '')) AS request_key,
        date_trunc('hour', to_timestamp(round(start_time, 3))) AS usage_hour,
        CAST(response_cost AS DECIMAL(38, 18)) AS cost,
        prompt_tokens, completion_tokens, total_tokens,
        coalesce(status, 'success') <> 'success' AS failed,
        date_diff('microsecond', to_timestamp(round(start_time, 3)), to_timestamp(end_time))
            / 1000.0 AS latency_ms,
        list_concat(coalesce(request_tags, []),
                    coalesce(string_split(headers."x-litellm-tags", ','), [])) AS tags,
        headers, team_alias, key_alias, end_time, request_id,
        -- "openai/gpt-4o" from provider openai is model gpt-4o
        coalesce(nullif(custom_llm_provider, ''), nullif(split_part(model, '/', 1), model))
            AS provider,
        model AS raw_model
    FROM read_json($files, format = 'newline_delimited', columns = $columns,
                   hive_partitioning = false)
),
requests AS (
    SELECT * FROM landed
    QUALIFY row_number() OVER (
        PARTITION BY request_key
        ORDER BY cost DESC, total_tokens DESC, end_time DESC, request_id
    ) = 1
),
attributed AS (
    SELECT usage_hour, cost, prompt_tokens, completion_tokens, total_tokens, failed, latency_ms,
        provider,
        CASE WHEN starts_with(raw_model, provider || '/') THEN raw_model[length(provider) + 2:]
             ELSE raw_model END AS model,
        {_dimension("department")} AS department,
        {_dimension("team")} AS team,
        {_dimension("agent")} AS agent
    FROM requests
    LEFT JOIN (SELECT * FROM mapping WHERE kind = 'key') AS k ON k.alias = key_alias
    LEFT JOIN (SELECT * FROM mapping WHERE kind = 'team') AS t ON t.alias = team_alias
),
aggregates AS (
    SELECT usage_hour, department, team, agent, GROUPING(team, agent) AS grouping_level,
        CAST(sum(cost) AS DECIMAL(38, 18)) AS cost,
        sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
        sum(total_tokens) AS total_tokens, count(*) AS requests,
        count(*) FILTER (WHERE failed) AS failed_requests,
        quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
        quantile_cont(latency_ms, 0.95) AS latency_p95_ms
    FROM attributed
    GROUP BY GROUPING SETS (
        (usage_hour, department), (usage_hour, department, team),
        (usage_hour, department, team, agent)
    )
),
resources AS (
    SELECT strftime(usage_hour, '%Y-%m-%dT%H:00:00Z') AS hour,
        {_tag("department")} AS d, {_tag("team")} AS t, {_tag("agent")} AS a,
        {_tag("provider")} AS p, {_tag("model")} AS m,
        sum(cost) AS cost, sum(total_tokens) AS tokens, count(*) AS requests
    FROM attributed
    GROUP BY ALL
)
SELECT 'aggregate' AS kind, grouping_level, usage_hour, department, team, agent, cost,
    prompt_tokens, completion_tokens, total_tokens, requests, failed_requests,
    latency_p50_ms, latency_p95_ms, NULL AS cbf_row
FROM aggregates
UNION ALL
SELECT 'cbf', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, [
    hour, 'Usage',
    'LiteLLM spend: ' || requests || ' request' || CASE WHEN requests = 1 THEN '' ELSE 's' END,
    'LiteLLM',
    'litellm/' || url_encode(d) || '/' || url_encode(t) || '/' || url_encode(a) || '/'
        || url_encode(p) || '/' || url_encode(m),
    CAST(tokens AS VARCHAR), 'tokens',
    CASE WHEN cost = 0 THEN '0' ELSE rtrim(rtrim(CAST(cost AS VARCHAR), '0'), '.') END,
    d, t, a, p, m
]
FROM resources
"""

# GROUPING(team, agent) of each aggregate's grouping set.
GROUPING_LEVELS = {"spend_by_department": 3, "spend_by_team": 1, "spend_by_agent": 0}


def landing_files(data_dir: Path) -> list[str]:
    return sorted(str(p) for p in (data_dir / "landing" / "litellm_webhook").glob("*/*/*.ndjson"))


def run_baseline(data_dir: Path, mapping_file: Path) -> tuple[float, pa.Table]:
    """Seconds of the query (connection included) and its result."""
    started = time.perf_counter()
    with duckdb.connect(":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("mapping", load_mapping(mapping_file))
        params = {"files": landing_files(data_dir), "columns": _COLUMNS}
        result = con.sql(SQL, params=params).to_arrow_table()
    return time.perf_counter() - started, result


def aggregate_rows(result: pa.Table, asset: str, dimensions: list[str]) -> list[tuple]:
    """The baseline's rows of one aggregate, sorted, in the lake table's column order."""
    rows = result.filter(pc.equal(result["grouping_level"], GROUPING_LEVELS[asset]))
    names = ["usage_hour", *dimensions, "cost", "prompt_tokens", "completion_tokens"]
    names += ["total_tokens", "requests", "failed_requests", "latency_p50_ms", "latency_p95_ms"]
    return sorted(tuple(r[n] for n in names) for r in rows.select(names).to_pylist())


def cbf_rows(result: pa.Table) -> list[tuple[str, ...]]:
    rows = result.filter(pc.equal(result["kind"], "cbf"))["cbf_row"].to_pylist()
    return sorted(tuple(r) for r in rows)


if __name__ == "__main__":
    seconds, table = run_baseline(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps({"seconds": seconds, "rows": table.num_rows}))
