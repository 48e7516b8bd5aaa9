from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from resources.litellm_db import (
    SPEND_LOGS_SQL,
    SessionLimits,
    SpendLogsDatabaseError,
    libpq_url,
    read_spend_logs,
    redact,
    spend_logs_sql,
)
from resources.spend_logs import SPEND_LOG_SCHEMA
from tests.spend_log_rows import load_rows, spend_log_row

HOUR = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)


def test_libpq_url_carries_the_session_limits_and_prisma_schema():
    url = libpq_url(
        "postgresql://u:p@db.internal:5432/litellm?schema=llm&connection_limit=5&sslmode=require",
        SessionLimits(statement_timeout_s=60, lock_timeout_s=2),
    )
    query = parse_qs(urlsplit(url).query)
    assert query["sslmode"] == ["require"] and "schema" not in query
    assert "connection_limit" not in query
    options = query["options"][0]
    for setting in (
        "default_transaction_read_only=on",
        "statement_timeout=60000",
        "lock_timeout=2000",
        "search_path=llm",
    ):
        assert f"-c {setting}" in options
    assert "jit" not in options
    assert "-c jit=off" in SessionLimits(jit=False).options()  # the fingerprint query's


def test_a_non_postgres_url_is_refused_clearly():
    with pytest.raises(SpendLogsDatabaseError, match="must be a postgresql:// URL, not mysql://"):
        libpq_url("mysql://u@h/db", SessionLimits())


def test_redact_hides_only_the_password():
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_the_window_is_written_as_utc_timestamp_literals():
    sql = spend_logs_sql(HOUR, HOUR + timedelta(hours=1))
    assert """s."startTime" >= TIMESTAMP '2026-03-01 10:00:00.000000'""" in sql
    assert """s."startTime" < TIMESTAMP '2026-03-01 11:00:00.000000'""" in sql
    with pytest.raises(TypeError, match="aware datetime"):
        spend_logs_sql(HOUR.replace(tzinfo=None), HOUR)
    with pytest.raises(TypeError, match="aware datetime"):
        spend_logs_sql("2026-03-01'; DROP TABLE x; --", HOUR)


def test_the_query_selects_no_content_column():
    selected = SPEND_LOGS_SQL.split("FROM")[0]
    for column in ("messages", "response", "proxy_server_request"):
        assert column not in selected
    assert "m.user_api_key_alias" in selected and "s.metadata," not in selected


@pytest.fixture(scope="module")
def spend_db(postgres_server):
    dsn = postgres_server.create_database("spend_logs_reader")
    rows = [
        spend_log_row(request_id="first", startTime=HOUR),
        spend_log_row(request_id="last", startTime=HOUR + timedelta(minutes=59, seconds=59.999)),
        spend_log_row(request_id="next-hour", startTime=HOUR + timedelta(hours=1)),
        spend_log_row(request_id="before", startTime=HOUR - timedelta(milliseconds=1)),
    ]
    load_rows(dsn, rows)
    return dsn


def test_the_window_is_exactly_start_inclusive_end_exclusive(spend_db):
    table = read_spend_logs(spend_db, HOUR, HOUR + timedelta(hours=1))
    assert table.schema == SPEND_LOG_SCHEMA
    assert sorted(table["request_id"].to_pylist()) == ["first", "last"]


def test_metadata_values_are_extracted_not_copied(spend_db):
    table = read_spend_logs(spend_db, HOUR, HOUR + timedelta(hours=1))
    row = table.to_pylist()[0]
    assert row["key_alias"] and row["team_alias"]
    assert "CONTENT-MARKER" not in str(table.to_pylist())
