"""Per-hour fingerprints of LiteLLM's table (real PostgreSQL) and of the lake agree exactly on
identical rows, and change when a row is added, repriced or re-ended."""

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import psycopg2
import pytest

from resources.lake import LakeResource, hours_between
from resources.litellm_db import SessionLimits, hour_fingerprints_sql, read_spend_logs
from resources.spend_log_fingerprints import (
    EMPTY,
    HourDifference,
    HourFingerprint,
    database_fingerprints,
    differing_hours,
    lake_fingerprints,
)
from resources.spend_logs import raw_spend_from_logs
from tests.spend_log_rows import load_rows, spend_log_row

UTC = timezone.utc
HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOURS = hours_between(HOUR, HOUR + timedelta(hours=4))  # 10..13; 12 has no rows
LIMITS = SessionLimits(statement_timeout_s=10)
# Spends whose 18-decimal rounding matters: halves away from zero, below the last place,
# 17 significant digits, large, negative (a refund), zero.
EDGE_SPENDS = [5e-19, 1.5e-18, 4.999999999999999e-19, 1.2345678901234567e-05, 123456.78901234567]
EDGE_SPENDS += [-0.3, 0.0, 0.1, 1e-05]


def lake_cost(spend: float) -> Decimal:
    return Decimal(repr(spend)).quantize(Decimal("1e-18"), rounding=ROUND_HALF_UP)


def table_rows() -> list[dict]:
    rng = random.Random(41)
    rows = []
    for i in range(300):
        hour = HOURS[i % 3 if i % 3 < 2 else 3]
        start = hour + timedelta(milliseconds=rng.randrange(3_600_000))
        spend = EDGE_SPENDS[i] if i < len(EDGE_SPENDS) else rng.random() / 100
        rows.append(spend_log_row(request_id=f"r-{i:03d}", startTime=start, spend=spend))
    # On the hours' edges: the last millisecond of 10:00, the first of 11:00.
    rows.append(spend_log_row(request_id="edge-a", startTime=HOURS[1] - timedelta(milliseconds=1)))
    rows.append(spend_log_row(request_id="edge-b", startTime=HOURS[1]))
    return rows


def expected(rows: list[dict]) -> dict[datetime, HourFingerprint]:
    by_hour: dict[datetime, list[dict]] = {}
    for row in rows:
        by_hour.setdefault(row["startTime"].replace(minute=0, second=0, microsecond=0), []).append(
            row
        )
    return {
        hour: HourFingerprint(
            len(group),
            sum((lake_cost(r["spend"]) for r in group), Decimal(0)),
            max(r["endTime"] for r in group),
        )
        for hour, group in by_hour.items()
    }


def materialise(dsn: str, lake: LakeResource) -> None:
    """``litellm_spend_logs`` for ``HOURS`` as the asset writes it from the database."""
    logs = read_spend_logs(dsn, HOURS[0], HOURS[-1] + timedelta(hours=1), LIMITS)
    lake.write_hours("litellm_spend_logs", raw_spend_from_logs(logs), HOURS)


@pytest.fixture
def spend_db(postgres_server, request) -> str:
    dsn = postgres_server.create_database(f"fingerprints_{request.node.name[-40:].lower()}")
    load_rows(dsn, table_rows())
    return dsn


def execute(dsn: str, sql: str, *params) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        conn.close()


def fingerprints(dsn: str, lake: LakeResource):
    end = HOURS[-1] + timedelta(hours=1)
    return database_fingerprints(dsn, HOURS[0], end, LIMITS), lake_fingerprints(lake, HOURS)


def test_identical_rows_give_identical_fingerprints_on_both_sides(spend_db, tmp_path):
    lake = LakeResource(data_dir=str(tmp_path))
    materialise(spend_db, lake)
    database, in_lake = fingerprints(spend_db, lake)

    assert database == in_lake == expected(table_rows())
    assert set(database) == {HOURS[0], HOURS[1], HOURS[3]}  # the empty hour has none
    assert database[HOURS[1]].rows == 101  # 100 rows and the one at exactly 11:00
    assert differing_hours(HOURS, database, in_lake) == []
    assert all(d.text() == in_lake[h].text() for h, d in database.items())


@pytest.mark.parametrize(
    ("change", "changed_hour"),
    [
        # A row that reached the database late.
        ("INSERT", 0),
        # A spend corrected by less than the lake's last decimal moves the sum, still exactly.
        ("""UPDATE "LiteLLM_SpendLogs" SET spend = 0.1 + 2e-17 WHERE request_id = 'r-007'""", 1),
        # The same spend, a later end.
        (
            """UPDATE "LiteLLM_SpendLogs" SET "endTime" = "endTime" + interval '1 hour' """
            """WHERE request_id = 'r-002'""",
            3,
        ),
    ],
    ids=["row-added", "spend-corrected", "end-later"],
)
def test_a_change_in_the_database_shows_in_that_hour_only(spend_db, tmp_path, change, changed_hour):
    lake = LakeResource(data_dir=str(tmp_path))
    materialise(spend_db, lake)
    if change == "INSERT":
        load_rows(
            spend_db, [spend_log_row(request_id="late", startTime=HOURS[0] + timedelta(minutes=5))]
        )
    else:
        execute(spend_db, change)
    database, in_lake = fingerprints(spend_db, lake)

    [difference] = differing_hours(HOURS, database, in_lake)
    assert difference.hour == HOURS[changed_hour] and not difference.rows_gone
    materialise(spend_db, lake)  # restating the hour makes them agree again
    assert differing_hours(HOURS, *fingerprints(spend_db, lake)) == []


def test_an_hour_never_materialised_differs_and_a_deleted_row_is_told_apart(spend_db, tmp_path):
    lake = LakeResource(data_dir=str(tmp_path))
    materialise(spend_db, lake)
    (tmp_path / lake.hour_key("litellm_spend_logs", HOURS[3])).unlink()
    execute(spend_db, """DELETE FROM "LiteLLM_SpendLogs" WHERE request_id = 'r-001'""")
    database, in_lake = fingerprints(spend_db, lake)

    deleted, never = differing_hours(HOURS, database, in_lake)
    assert (never.hour, never.lake, never.rows_gone) == (HOURS[3], EMPTY, False)
    assert (deleted.hour, deleted.rows_gone) == (HOURS[1], True)
    assert deleted.database.rows == deleted.lake.rows - 1


def test_each_hour_is_an_aggregate_over_a_range_of_the_start_time_index(spend_db):
    sql = hour_fingerprints_sql(HOUR, HOUR + timedelta(days=7))
    assert "TIMESTAMP '2026-03-01 10:00:00.000000' + make_interval(hours => n)" in sql
    assert "generate_series(0, 167)" in sql  # 7 days of hours, a length the planner knows
    assert "metadata" not in sql and "messages" not in sql
    conn = psycopg2.connect(spend_db)
    try:
        with conn.cursor() as cursor:
            cursor.execute('ANALYZE "LiteLLM_SpendLogs"')
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            [explained] = cursor.fetchone()[0]
            plan = json.dumps(explained)
    finally:
        conn.close()
    assert '"Index Name": "LiteLLM_SpendLogs_startTime_idx"' in plan
    assert "Seq Scan" not in plan and "HashAggregate" not in plan
    assert explained["Plan"]["Plan Rows"] == 168  # one row per hour, as estimated
    for start, end in [(HOUR + timedelta(seconds=30), HOUR + timedelta(hours=2, seconds=30))]:
        with pytest.raises(ValueError, match="per whole UTC hour"):
            hour_fingerprints_sql(start, end)
    with pytest.raises(ValueError, match="per whole UTC hour"):
        hour_fingerprints_sql(HOUR, HOUR)


def test_fingerprint_text_and_differences():
    end = datetime(2026, 3, 1, 10, 59, 59, 999000, tzinfo=UTC)
    fingerprint = HourFingerprint(3, Decimal("0.25"), end)
    assert fingerprint.text() == "3/0.250000000000000000/2026-03-01T10:59:59.999000+00:00"
    assert EMPTY.text() == "0/0.000000000000000000/-"
    assert HourFingerprint(3, Decimal("0.250"), end) == fingerprint
    difference = HourDifference(HOUR, fingerprint, EMPTY)
    assert difference.line() == f"2026-03-01T10Z database {fingerprint.text()} lake {EMPTY.text()}"
    assert differing_hours([HOURS[1], HOUR], {HOUR: fingerprint}, {}) == [difference]
    assert HourDifference(HOUR, EMPTY, fingerprint).rows_gone
