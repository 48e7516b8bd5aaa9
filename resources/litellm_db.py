"""Read ``"LiteLLM_SpendLogs"`` from LiteLLM's own PostgreSQL, Arrow-native, without disturbing it.

One query per run covers the whole partition range. It selects allow-listed columns only
(never ``messages``, ``response``, ``proxy_server_request``; of ``metadata`` just three
values, extracted by the server), and arrives as Arrow through the ADBC PostgreSQL driver,
which reads PostgreSQL's binary COPY stream: no Python object per row.

``read_hour_fingerprints`` is the other read: per hour, the row count, exact spend and latest
``"endTime"``, one query of one index-bounded aggregate per hour, for finding hours that
changed after they were materialised.

LiteLLM's database serves live traffic, so the session is read-only, each statement has a
time limit, and a lock that is not granted at once (a migration holding the table) makes
the read fail fast instead of queueing and stalling LiteLLM's own writers behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as adbc_pg
import pyarrow as pa

from resources.litellm_usage import CACHE_CREATION_PATHS, CACHE_READ_PATHS, cache_tokens_sql
from resources.spend_logs import SPEND_LOG_SCHEMA

# The window's bounds are written into the text as timestamp literals (from datetimes,
# never from user input): with bound parameters the ADBC driver runs a prepared statement
# and buffers the whole result in libpq, while an unparameterised query streams through
# COPY (half the peak memory in benchmarks/results/spend_logs_pull.md). jsonb_to_record
# decompresses metadata once for the values it takes, where one ->> each would do it again.
SPEND_LOGS_SQL = """
SELECT
    s.request_id,
    s.litellm_call_id,
    s.call_type,
    s.status,
    s."startTime" AS start_time,
    s."endTime" AS end_time,
    s.model,
    s.model_group,
    s.custom_llm_provider,
    s.spend,
    s.prompt_tokens::int8 AS prompt_tokens,
    s.completion_tokens::int8 AS completion_tokens,
    s.total_tokens::int8 AS total_tokens,
    s.request_tags::text AS request_tags,
    s.team_id,
    m.user_api_key_alias AS key_alias,
    m.user_api_key_team_alias AS team_alias,
    coalesce(nullif(s."user", ''), m.user_api_key_user_id) AS user_id,
    m.error_information->>'error_class' AS error_class,
    m.error_information->>'error_code' AS error_code,
    s.cache_hit,
    {cache_read} AS cache_read_tokens,
    {cache_creation} AS cache_creation_tokens
FROM "LiteLLM_SpendLogs" AS s
CROSS JOIN LATERAL jsonb_to_record(
    CASE WHEN jsonb_typeof(s.metadata) = 'object' THEN s.metadata ELSE '{{{{}}}}' END
) AS m(
    user_api_key_alias text,
    user_api_key_team_alias text,
    user_api_key_user_id text,
    error_information jsonb,
    usage_object jsonb
)
WHERE s."startTime" >= {{start}} AND s."startTime" < {{end}}
""".format(
    cache_read=cache_tokens_sql("m.usage_object", CACHE_READ_PATHS),
    cache_creation=cache_tokens_sql("m.usage_object", CACHE_CREATION_PATHS),
)


# Per UTC hour of [start, end) that has rows: what a restatement of the hour would change.
# Each hour is its own aggregate over a range of LiteLLM's "startTime" index, so the read is
# bounded by the index, needs no sort or hash of the window's rows (a GROUP BY over
# date_trunc sorts them all, spilling to disk past work_mem) and holds one hour at a time.
# Spend is each float8's shortest round-trip text rounded to 18 places, as the lake keeps
# it, so identical rows give an identical sum on both sides.
# The hours come from an integer series, whose length the planner knows (a timestamp
# series is guessed at 1000 rows on PostgreSQL 15).
HOUR_FINGERPRINTS_SQL = """
SELECT h.hour, f.row_count, f.spend, f.last_end_time
FROM (
    SELECT {start} + make_interval(hours => n) AS hour FROM generate_series(0, {last}) AS n
) AS h
CROSS JOIN LATERAL (
    SELECT
        count(*) AS row_count,
        sum(round(coalesce(s.spend, 0)::text::numeric, 18))::text AS spend,
        max(coalesce(s."endTime", s."startTime")) AS last_end_time
    FROM "LiteLLM_SpendLogs" AS s
    WHERE s."startTime" >= h.hour AND s."startTime" < h.hour + INTERVAL '1 hour'
) AS f
WHERE f.row_count > 0
ORDER BY h.hour
"""


def spend_logs_sql(start: datetime, end: datetime) -> str:
    """``SPEND_LOGS_SQL`` for ``[start, end)``; "startTime" is timestamp without time zone, UTC."""
    return SPEND_LOGS_SQL.format(start=_timestamp_literal(start), end=_timestamp_literal(end))


def hour_fingerprints_sql(start: datetime, end: datetime) -> str:
    """``HOUR_FINGERPRINTS_SQL`` for the whole UTC hours of ``[start, end)``."""
    first, hours = start.astimezone(timezone.utc), (end - start) / timedelta(hours=1)
    if first.minute or first.second or first.microsecond or not hours.is_integer() or hours < 1:
        raise ValueError(f"fingerprints are per whole UTC hour, got {start} .. {end}")
    return HOUR_FINGERPRINTS_SQL.format(start=_timestamp_literal(start), last=int(hours) - 1)


def _timestamp_literal(moment: datetime) -> str:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise TypeError(f"a window bound must be an aware datetime, not {moment!r}")
    return f"TIMESTAMP '{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}'"


@dataclass(frozen=True)
class SessionLimits:
    """Server-side settings of the reading session (libpq ``options``)."""

    statement_timeout_s: int = 300
    lock_timeout_s: int = 5
    application_name: str = "litellm-cloudzero-spend"
    # Off for queries of many small index scans, whose plan cost (counted once per loop)
    # passes jit_above_cost although compiling takes longer than running them.
    jit: bool = True

    def options(self) -> str:
        return " ".join(
            [
                "-c default_transaction_read_only=on",
                f"-c statement_timeout={self.statement_timeout_s * 1000}",
                f"-c lock_timeout={self.lock_timeout_s * 1000}",
                f"-c idle_in_transaction_session_timeout={self.statement_timeout_s * 1000}",
                *([] if self.jit else ["-c jit=off"]),
            ]
        )


class SpendLogsDatabaseError(RuntimeError):
    """The database could not be read; the message names the server, never the password."""


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def libpq_url(database_url: str, limits: SessionLimits) -> str:
    """LiteLLM's ``DATABASE_URL`` as a libpq URI carrying the session limits.

    LiteLLM's URL is Prisma's: its ``schema`` parameter is not libpq's, so it becomes the
    session's ``search_path``; other parameters (``sslmode``…) pass through.
    """
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SpendLogsDatabaseError(
            f"LITELLM_DATABASE_URL must be a postgresql:// URL, not {parts.scheme or 'empty'}://"
        )
    params = dict(parse_qsl(parts.query))
    options = limits.options()
    if schema := params.pop("schema", None):
        options += f" -c search_path={schema}"
    params.pop("connection_limit", None)  # Prisma's pool size, unknown to libpq
    params.pop("pool_timeout", None)
    params["options"] = options
    params["application_name"] = limits.application_name
    return urlunsplit(parts._replace(query=urlencode(params, quote_via=quote)))


def read_spend_logs(
    database_url: str, start: datetime, end: datetime, limits: SessionLimits | None = None
) -> pa.Table:
    """Every spend-log row with ``start <= "startTime" < end``, as ``SPEND_LOG_SCHEMA``."""
    return _read(database_url, spend_logs_sql(start, end), limits).cast(SPEND_LOG_SCHEMA)


def read_hour_fingerprints(
    database_url: str, start: datetime, end: datetime, limits: SessionLimits | None = None
) -> pa.Table:
    """Per hour of ``[start, end)`` that has rows: ``hour`` (naive UTC), ``row_count``,
    ``spend`` (exact, as text) and ``last_end_time`` (naive UTC); one query."""
    return _read(database_url, hour_fingerprints_sql(start, end), limits)


def _read(database_url: str, query: str, limits: SessionLimits | None) -> pa.Table:
    """``query``'s result in a read-only, time-limited session; errors without the password."""
    uri = libpq_url(database_url, limits or SessionLimits())
    try:
        with adbc_pg.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetch_arrow_table()
    except adbc_pg.Error as exc:
        detail = str(exc).replace(database_url, redact(database_url)).splitlines()[0][:300]
        raise SpendLogsDatabaseError(
            f"reading LiteLLM_SpendLogs from {redact(database_url)} failed: {detail}"
        ) from None
