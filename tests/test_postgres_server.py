"""The test PostgreSQL server, LiteLLM's spend-log table on it, and the rows loaded into it."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest

from demo.traffic import generate_traffic
from tests import postgres
from tests.litellm_install import TESTED_VERSIONS, ensure_litellm_venv
from tests.samples import LITELLM_FIXTURES
from tests.spend_log_rows import (
    CACHE_HIT_ID,
    CALL_ID_AS_REQUEST_ID,
    COLLIDING_REQUEST_ID,
    COLUMNS,
    CONTENT_MARKER,
    DEFECT_KINDS,
    KEY_MARKER,
    MISSING_CALL_ID,
    TABLE,
    ZERO_SPEND,
    ensure_table,
    load_rows,
    rows_from_traffic,
    spend_log_row,
    with_defects,
)

LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
TCP_LISTEN = "0A"
# information_schema's names for the types Prisma maps the model's fields to.
PRISMA_TYPES = {
    "String": "text",
    "Float": "double precision",
    "Int": "integer",
    "DateTime": "timestamp without time zone",
    "Json": "jsonb",
}
COLUMN_KIND_TYPES = {
    "text": "text",
    "float": "double precision",
    "int": "integer",
    "timestamp": "timestamp without time zone",
    "json": "jsonb",
}
EXPECTED_INDEXES = {
    "LiteLLM_SpendLogs_pkey": "(request_id)",
    "LiteLLM_SpendLogs_startTime_idx": '("startTime")',
    "LiteLLM_SpendLogs_startTime_request_id_idx": '("startTime", request_id)',
    "LiteLLM_SpendLogs_end_user_idx": "(end_user)",
    "LiteLLM_SpendLogs_session_id_idx": "(session_id)",
    "LiteLLM_SpendLogs_litellm_call_id_idx": "(litellm_call_id)",
    "LiteLLM_SpendLogs_api_key_startTime_idx": '(api_key, "startTime")',
}


@pytest.fixture
def database(postgres_server) -> str:
    """A fresh, empty database on the session's server; its DSN."""
    return postgres_server.create_database(f"spend_{uuid.uuid4().hex[:12]}")


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        conn.close()


def fetch_rows(dsn: str, where: str = "TRUE", params: tuple = ()) -> list[dict]:
    columns = ", ".join(f'"{name}"' for name in COLUMNS)
    found = query(dsn, f'SELECT {columns} FROM "{TABLE}" WHERE {where} ORDER BY 1', params)
    return [dict(zip(COLUMNS, values, strict=True)) for values in found]


def as_loaded(row: dict) -> dict:
    """``row`` as PostgreSQL hands it back: timestamps naive, in UTC."""
    return {
        name: value.astimezone(timezone.utc).replace(tzinfo=None)
        if isinstance(value, datetime)
        else value
        for name, value in row.items()
    }


# -- the server -----------------------------------------------------------------------------


def _process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))


def test_server_runs_as_an_unprivileged_user(postgres_server):
    uid = _process_uid(postgres_server.pid)

    assert uid != 0
    if os.geteuid() == 0:
        assert postgres_server.os_user == "postgres"
    else:
        assert uid == os.geteuid()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of every TCP socket listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == TCP_LISTEN and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_server_listens_on_127_0_0_1_only(postgres_server):
    [(listen_addresses,)] = query(postgres_server.dsn(), "SHOW listen_addresses")

    assert listen_addresses == "127.0.0.1"
    assert _listening_addresses(postgres_server.port) == {LOOPBACK_HEX}
    assert postgres_server.dsn("x").startswith("postgresql://postgres@127.0.0.1:")


def test_a_server_that_ignores_pg_ctl_stop_is_killed(monkeypatch):
    server = postgres.PostgresServer()
    server.start()
    pid, root = server.pid, server.root
    real_run = server._run

    def stop_does_nothing(binary, *args, timeout):
        if args[:1] == ("stop",):
            raise subprocess.TimeoutExpired(binary, timeout)
        return real_run(binary, *args, timeout=timeout)

    monkeypatch.setattr(server, "_run", stop_does_nothing)
    server.stop()

    assert not Path(f"/proc/{pid}").exists()
    assert not root.exists()


def test_missing_binaries_say_how_to_install_them(monkeypatch, tmp_path):
    monkeypatch.delenv(postgres.PG_BIN_ENV, raising=False)
    monkeypatch.setattr(postgres, "DEBIAN_BIN_GLOB", str(tmp_path / "*" / "bin"))

    with pytest.raises(postgres.PostgresNotAvailable, match="make postgres"):
        postgres.find_bin_dir()


def test_a_pg_bin_without_server_binaries_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(postgres.PG_BIN_ENV, str(tmp_path))

    with pytest.raises(postgres.PostgresNotAvailable, match="PG_BIN"):
        postgres.find_bin_dir()


# -- LiteLLM's table --------------------------------------------------------------------------


def _table_columns(dsn: str) -> list[tuple]:
    return query(
        dsn,
        """
        SELECT column_name, data_type, is_nullable, column_default, datetime_precision
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = %s
        ORDER BY ordinal_position
        """,
        (TABLE,),
    )


def test_ddl_creates_litellm_spend_logs_with_prisma_types(database):
    conn = psycopg2.connect(database)
    with conn:
        assert ensure_table(conn) is True
        assert ensure_table(conn) is False  # present now: left alone
    conn.close()

    columns = {name: rest for name, *rest in _table_columns(database)}

    assert list(columns) == list(COLUMNS)
    assert {name: spec[0] for name, spec in columns.items()} == {
        name: COLUMN_KIND_TYPES[kind] for name, kind in COLUMNS.items()
    }
    assert {name for name, spec in columns.items() if spec[1] == "NO"} == {
        "request_id",
        "call_type",
        "api_key",
        "spend",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "startTime",
        "endTime",
        "model",
        "created_at",
        "updated_at",
    }
    timestamps = [n for n, kind in COLUMNS.items() if kind == "timestamp"]
    assert {columns[n][3] for n in timestamps} == {3}  # TIMESTAMP(3): milliseconds
    defaults = {name: spec[2] for name, spec in columns.items() if spec[2] is not None}
    assert defaults["spend"] == "0.0"
    assert defaults["api_key"] == defaults["model"] == "''::text"
    assert defaults["metadata"] == defaults["messages"] == "'{}'::jsonb"
    assert defaults["request_tags"] == "'[]'::jsonb"
    assert defaults["created_at"] == defaults["updated_at"] == "CURRENT_TIMESTAMP"
    assert "request_id" not in defaults and "team_id" not in defaults


def test_ddl_has_litellm_primary_key_and_indexes(database):
    load_rows(database, [])  # creates the table, loads nothing

    indexes = dict(
        query(database, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (TABLE,))
    )

    assert {
        name: d.partition(" USING btree ")[2] for name, d in indexes.items()
    } == EXPECTED_INDEXES
    assert "UNIQUE" in indexes["LiteLLM_SpendLogs_pkey"]


def _prisma_model(schema: str) -> tuple[dict[str, tuple[str, bool]], list[str]]:
    """``model LiteLLM_SpendLogs``'s fields, name → (Prisma type, optional), in order, and
    the names Prisma gives its ``@@index`` lines."""
    body = re.search(r"^model LiteLLM_SpendLogs \{(.*?)^\}", schema, re.DOTALL | re.MULTILINE)
    fields, indexes = {}, []
    for line in body.group(1).splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("//"):
            continue
        if parts[0].startswith("@@index("):
            columns = re.search(r"\[(.*?)\]", line).group(1).replace(" ", "").split(",")
            indexes.append(f"{TABLE}_{'_'.join(columns)}_idx")
        elif not parts[0].startswith("@@"):
            fields[parts[0]] = (parts[1].rstrip("?"), parts[1].endswith("?"))
    return fields, indexes


@pytest.mark.parametrize("version", TESTED_VERSIONS)
def test_ddl_follows_the_installed_litellm_schema(database, version):
    venv = ensure_litellm_venv(version)  # the real schema.prisma of the version the DDL follows
    schemas = sorted(venv.glob("lib/python*/site-packages/litellm/proxy/schema.prisma"))
    assert schemas, f"no schema.prisma in {venv}"
    fields, indexes = _prisma_model(schemas[0].read_text())
    conn = psycopg2.connect(database)
    with conn, conn.cursor() as cursor:
        cursor.execute((LITELLM_FIXTURES / f"spend_logs_{version}.sql").read_text())
    conn.close()

    columns = {name: (kind, nullable) for name, kind, nullable, *_ in _table_columns(database)}
    index_names = {
        name
        for (name,) in query(
            database, "SELECT indexname FROM pg_indexes WHERE tablename = %s", (TABLE,)
        )
    }

    assert list(columns) == list(fields)
    assert columns == {
        name: (PRISMA_TYPES[kind], "YES" if optional else "NO")
        for name, (kind, optional) in fields.items()
    }
    assert index_names == {f"{TABLE}_pkey", *indexes}


# -- rows in, rows out ------------------------------------------------------------------------


def test_spend_log_row_carries_content_and_a_key_in_every_heavy_column():
    row = spend_log_row()
    meta = row["metadata"]

    for blob in (
        row["messages"],
        row["response"],
        row["proxy_server_request"],
        meta["proxy_server_request"],
        meta["model_map_information"],
    ):
        assert CONTENT_MARKER in str(blob)
    assert f"Bearer {KEY_MARKER}" in meta["proxy_server_request"]
    assert f"Bearer {KEY_MARKER}" in str(row["messages"])
    assert KEY_MARKER not in row["api_key"] + meta["user_api_key"]  # hashed
    assert meta["user_api_key_alias"] and meta["user_api_key_team_alias"]
    assert "x-department: finance" in row["request_tags"]


def test_load_rows_round_trips_every_column(database):
    awkward = spend_log_row(
        model="tab\there, newline\nhere, backslash \\N and ünïcode",
        metadata={"nested": {"quote": '"', "backslash": "\\", "null": None}, "list": [1, 2.5]},
        request_tags=[],
        messages=None,  # SQL NULL, not JSON null
        response={"text": "line one\nline two\r\n\ttabbed"},
        spend=0.00017999999999999998,
        user="",
        completionStartTime=None,
    )
    failure = spend_log_row(status="failure", prompt_tokens=0, completion_tokens=0, response={})
    rows = [spend_log_row(), awkward, failure]

    assert load_rows(database, rows) == 3

    loaded = {row["request_id"]: row for row in fetch_rows(database)}
    assert loaded == {row["request_id"]: as_loaded(row) for row in rows}
    [(spend_text,)] = query(
        database,
        f'SELECT spend::text FROM "{TABLE}" WHERE request_id = %s',
        (awkward["request_id"],),
    )
    assert spend_text == "0.00017999999999999998"


def test_load_rows_streams_any_iterable_in_chunks_in_one_transaction(database):
    start = datetime(2026, 1, 15, 9, tzinfo=timezone.utc)
    generated = (spend_log_row(startTime=start + timedelta(seconds=i)) for i in range(1050))

    assert load_rows(database, generated, chunk_rows=100) == 1050

    duplicate = fetch_rows(database)[0]
    with pytest.raises(psycopg2.errors.UniqueViolation):
        load_rows(database, [spend_log_row(), duplicate])
    assert query(database, f'SELECT count(*) FROM "{TABLE}"') == [(1050,)]


def test_rows_from_traffic_match_the_answer_key(database):
    traffic = generate_traffic(datetime(2026, 1, 15, 8, tzinfo=timezone.utc), 2, 60, seed=3)
    rows = rows_from_traffic(traffic)

    load_rows(database, rows)

    [(count, cost, tokens)] = query(
        database,
        f'SELECT count(*), sum(spend::text::numeric), sum(total_tokens) FROM "{TABLE}"',
    )
    assert (count, cost, tokens) == (
        len(traffic.requests),
        traffic.total_cost,
        traffic.total_tokens,
    )
    by_call = {row["litellm_call_id"]: row for row in fetch_rows(database)}
    assert set(by_call) == {r.request_key for r in traffic.requests}
    for expected in traffic.requests:
        row = by_call[expected.request_key]
        assert row["startTime"].replace(minute=0, second=0, microsecond=0) == expected.hour.replace(
            tzinfo=None
        )
        assert Decimal(repr(row["spend"])) == expected.cost
        assert row["status"] == ("failure" if expected.failed else "success")
        if expected.channel == "header":
            assert f"x-department: {expected.department}" in row["request_tags"]
            assert f"x-team: {expected.team}" in row["request_tags"]


def test_with_defects_plants_one_of_each_and_says_so(database):
    base = [spend_log_row(), spend_log_row(status="failure", spend=0.0)]
    rows, planted = with_defects(base)
    template = base[0]

    assert planted.counts() == {kind: 1 for kind in DEFECT_KINDS}
    assert with_defects(base) == (rows, planted)  # the same rows get the same defects
    assert len(rows) == len(base) + planted.rows_added == len(base) + 4
    assert load_rows(database, rows) == len(rows)

    loaded = {row["request_id"]: row for row in fetch_rows(database)}
    [cache_hit] = planted.of_kind(CACHE_HIT_ID)
    assert cache_hit.request_id.startswith(f"{template['request_id']}_cache_hit")
    assert loaded[cache_hit.request_id]["cache_hit"] == "True"
    assert loaded[cache_hit.request_id]["spend"] == 0.0
    assert loaded[cache_hit.request_id]["total_tokens"] > 0

    [no_id] = planted.of_kind(CALL_ID_AS_REQUEST_ID)
    assert loaded[no_id.request_id]["litellm_call_id"] == no_id.request_id

    [colliding] = planted.of_kind(COLLIDING_REQUEST_ID)
    assert not colliding.in_database and planted.webhook_only_rows == [colliding.row]
    assert colliding.request_id == template["request_id"]
    assert loaded[colliding.request_id]["litellm_call_id"] == colliding.shares_request_id_with
    assert colliding.litellm_call_id not in {r["litellm_call_id"] for r in loaded.values()}

    [zero] = planted.of_kind(ZERO_SPEND)
    assert loaded[zero.request_id]["spend"] == 0.0
    assert loaded[zero.request_id]["total_tokens"] > 0
    assert loaded[zero.request_id]["cache_hit"] == "False"

    [legacy] = planted.of_kind(MISSING_CALL_ID)
    assert loaded[legacy.request_id]["litellm_call_id"] is None
    assert loaded[legacy.request_id]["metadata"]["litellm_call_id"] is None

    planted_spend = [d.row["spend"] for d in planted.defects]
    assert planted.cost == sum(Decimal(repr(s)) for s in planted_spend)
    assert all(d.row["startTime"].hour == template["startTime"].hour for d in planted.defects)
