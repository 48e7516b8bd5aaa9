"""LiteLLM's spend logs through real Dagster runs of the real assets.

One sample traffic is the truth. Its requests are rows of ``"LiteLLM_SpendLogs"`` in a real
PostgreSQL (with LiteLLM's known data defects planted) and ``/spend/logs/v2`` pages of a fake
proxy on 127.0.0.1, and its webhook deliveries are a landing zone. Each run materialises the
whole partition range in one run, with its own ``SPEND_DATA_DIR``, and reads its settings
from the same environment variables a deployment sets.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import psycopg2.errors
import pyarrow.parquet as pq
import pytest

from assets.partitions import partition_key
from demo.population import MAPPING_YAML
from demo.traffic import Traffic, generate_traffic, land_traffic
from pipelines.definitions import ASSETS, resources_from_env
from pipelines.jobs import partition_range_tags
from resources.litellm import BOTH_CONFIGURED
from resources.litellm_db import (
    SPEND_LOGS_SQL,
    SessionLimits,
    SpendLogsDatabaseError,
    libpq_url,
    read_spend_logs,
)
from tests.fake_litellm import MASTER_KEY, FakeLiteLLM, api_row
from tests.samples import HOUR0
from tests.spend_log_rows import (
    MISSING_CALL_ID,
    SECRET_MARKERS,
    ZERO_SPEND,
    PlantedDefects,
    load_rows,
    rows_from_traffic,
    with_defects,
)

HOURS = 3
RANGE_END = HOUR0 + timedelta(hours=HOURS)
RANGE_TAGS = partition_range_tags(
    partition_key(HOUR0), partition_key(HOUR0 + timedelta(hours=HOURS - 1))
)
SOURCE_VARIABLES = ("LITELLM_DATABASE_URL", "LITELLM_PROXY_URL", "LITELLM_MASTER_KEY")
# Trust authentication never asks for it, so this password can only reach disk if
# something writes the database URL down.
DB_PASSWORD = "pg-SECRET-pw-5e1d"
DATABASE = "spend_log_sources"
PARTIAL_DATABASE = "spend_log_sources_partial"
REPRICED_ROWS = 4
LAKE_COST_STEP = Decimal("1e-18")
# A read blocked by a lock must fail after lock_timeout (1 s here); past this it hangs.
LOCKED_READ_BOUND_S = 15.0

# The spend-log assets and what they need, without the aggregates and CBF files after them.
SOURCES_JOB = dg.define_asset_job(
    "spend_log_sources_job",
    selection=dg.AssetSelection.assets(
        "litellm_spend_logs", "litellm_webhook_events", "spend_events"
    ),
)


# --- LiteLLM's table, and the same rows as its REST API serves them ------------------------


def row_key(row: dict[str, Any]) -> str:
    """The request key ``spend_events`` gives a database row: call id, else request id."""
    return row["litellm_call_id"] or row["request_id"]


def lake_cost(exact: Decimal) -> Decimal:
    """A cost as the lake keeps it: ``DECIMAL(38, 18)``, rounded half away from zero."""
    return exact.quantize(LAKE_COST_STEP, rounding=ROUND_HALF_UP)


def exact_spend(row: dict[str, Any]) -> Decimal:
    """A row's spend in the lake: its float8's shortest round-trip text, to 18 places."""
    return lake_cost(Decimal(repr(row["spend"])))


def traffic_cost(traffic: Traffic) -> Decimal:
    return sum((lake_cost(r.cost) for r in traffic.requests), Decimal(0))


@dataclass(frozen=True)
class SpendLogTable:
    """What LiteLLM's table holds for the traffic, and what was done to it."""

    rows: list[dict[str, Any]]
    planted: PlantedDefects
    repriced: frozenset[str]  # request keys whose row disagrees with their webhook delivery

    def cost_by_key(self) -> dict[str, Decimal]:
        return {row_key(r): exact_spend(r) for r in self.rows}

    def row_by_key(self) -> dict[str, dict[str, Any]]:
        return {row_key(r): r for r in self.rows}

    def cost_by_hour(self) -> dict[datetime, Decimal]:
        totals: dict[datetime, Decimal] = defaultdict(Decimal)
        for row in self.rows:
            totals[row["startTime"].replace(minute=0, second=0, microsecond=0)] += exact_spend(row)
        return dict(totals)

    @property
    def total_cost(self) -> Decimal:
        return sum(self.cost_by_key().values(), Decimal(0))


def repriced(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with a different spend and token count than its webhook delivery carries."""
    extra_tokens = 1000
    return {
        **row,
        "spend": row["spend"] * 3,
        "prompt_tokens": row["prompt_tokens"] + extra_tokens,
        "total_tokens": row["total_tokens"] + extra_tokens,
    }


def spend_log_table_for(traffic: Traffic) -> SpendLogTable:
    """The traffic's rows plus LiteLLM's defects, a few of them repriced.

    Database and webhook normally agree on cost and tokens; repricing some rows makes it
    visible which source supplied the numbers of a request seen by both.
    """
    rows, planted = with_defects(rows_from_traffic(traffic))
    traffic_keys = {r.request_key for r in traffic.requests}
    priced = [i for i, r in enumerate(rows) if r["spend"] > 0 and row_key(r) in traffic_keys]
    # Not the first priced row: with_defects imitates it, and its copies stay as planted.
    chosen = priced[1 :: len(priced) // REPRICED_ROWS][:REPRICED_ROWS]
    assert len(chosen) == REPRICED_ROWS
    for index in chosen:
        rows[index] = repriced(rows[index])
    return SpendLogTable(rows, planted, frozenset(row_key(rows[i]) for i in chosen))


def as_legacy_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as LiteLLM wrote it before it had the ``litellm_call_id`` column."""
    return {
        **row,
        "litellm_call_id": None,
        "metadata": {**row["metadata"], "litellm_call_id": None},
    }


def with_password(dsn: str, password: str = DB_PASSWORD) -> str:
    return dsn.replace("postgres@", f"postgres:{password}@", 1)


def without_requests(traffic: Traffic, call_ids: set[str]) -> Traffic:
    """``traffic`` as if every delivery of ``call_ids`` had been lost."""
    batches = [
        (at, kept)
        for at, payloads in traffic.batches
        if (kept := [p for p in payloads if p["litellm_call_id"] not in call_ids])
    ]
    requests = [r for r in traffic.requests if r.request_key not in call_ids]
    return Traffic(traffic.start, traffic.hour_count, batches, requests)


# --- runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcesRun:
    """One in-process run of ``SOURCES_JOB`` over the range, and where it wrote."""

    result: dg.ExecuteInProcessResult
    data_dir: Path

    def spend_events(self) -> dict[str, dict[str, Any]]:
        files = sorted((self.data_dir / "lake" / "spend_events").glob("date=*/hour=*/*.parquet"))
        assert len(files) == HOURS
        rows = [r for f in files for r in pq.read_table(f).to_pylist()]
        by_key = {r["request_key"]: r for r in rows}
        assert len(by_key) == len(rows), "one spend_events row per request"
        return by_key

    def materialized_partitions(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for event in self.result.get_asset_materialization_events():
            found[event.asset_key.to_user_string()].add(event.partition)
        return dict(found)

    def spend_logs_metadata(self) -> dict[str, Any]:
        """``litellm_spend_logs``'s metadata: one result for the range, recorded per hour."""
        recorded = [
            {name: value.value for name, value in event.materialization.metadata.items()}
            for event in self.result.get_asset_materialization_events()
            if event.asset_key == dg.AssetKey("litellm_spend_logs")
        ]
        assert len(recorded) == HOURS
        assert all(metadata == recorded[0] for metadata in recorded)
        return recorded[0]


def run_sources(root: Path, instance: dg.DagsterInstance, name: str, **env: str) -> SourcesRun:
    """Run ``SOURCES_JOB`` once over the range with ``env`` as the only spend-log settings."""
    data_dir = root / name / "data"
    data_dir.mkdir(parents=True, exist_ok=True)  # a test may have landed webhook events
    # EnvVar values resolve when the run starts, so the variables stay set through it.
    with pytest.MonkeyPatch.context() as patch:
        for variable in SOURCE_VARIABLES:
            patch.delenv(variable, raising=False)
        patch.setenv("SPEND_DATA_DIR", str(data_dir))
        patch.setenv("SPEND_ATTRIBUTION_FILE", str(root / "mapping.yaml"))
        for variable, value in env.items():
            patch.setenv(variable, value)
        defs = dg.Definitions(assets=ASSETS, jobs=[SOURCES_JOB], resources=resources_from_env())
        result = defs.resolve_job_def(SOURCES_JOB.name).execute_in_process(
            instance=instance, tags=RANGE_TAGS
        )
    assert result.success
    return SourcesRun(result, data_dir)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Everything the runs write: instance, data dirs, mapping file (all scanned at the end)."""
    path = tmp_path_factory.mktemp("spend_log_sources")
    (path / "mapping.yaml").write_text(MAPPING_YAML)
    return path


@pytest.fixture(scope="module")
def instance(root):
    (root / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        yield instance


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return generate_traffic(HOUR0, HOURS, events_per_hour=100, seed=23)


@pytest.fixture(scope="module")
def spend_log_table(traffic) -> SpendLogTable:
    return spend_log_table_for(traffic)


@pytest.fixture(scope="module")
def spend_db(postgres_server, spend_log_table) -> str:
    """LiteLLM's database URL, with a password, for a table holding ``spend_log_table``."""
    dsn = postgres_server.create_database(DATABASE)
    load_rows(dsn, spend_log_table.rows)
    return with_password(dsn)


@pytest.fixture(scope="module")
def database_run(root, instance, spend_db) -> SourcesRun:
    return run_sources(root, instance, "database", LITELLM_DATABASE_URL=spend_db)


@pytest.fixture(scope="module")
def hour_by_hour_run(root, instance, spend_db) -> SourcesRun:
    # 50 rows per chunk: every hour (100 requests) is its own fetch from LiteLLM's database.
    return run_sources(
        root, instance, "hour_by_hour", LITELLM_DATABASE_URL=spend_db, SPEND_CHUNK_ROWS="50"
    )


@pytest.fixture(scope="module")
def api_run(root, instance, spend_log_table) -> tuple[SourcesRun, FakeLiteLLM]:
    with FakeLiteLLM([api_row(r) for r in spend_log_table.rows]) as fake:
        run = run_sources(
            root, instance, "api", LITELLM_PROXY_URL=fake.url, LITELLM_MASTER_KEY=MASTER_KEY
        )
    return run, fake


@pytest.fixture(scope="module")
def merged_run(root, instance, traffic, spend_db) -> SourcesRun:
    land_traffic(traffic, root / "merged" / "data")
    return run_sources(root, instance, "merged", LITELLM_DATABASE_URL=spend_db)


@dataclass(frozen=True)
class PartialRun:
    run: SourcesRun
    only_in_database: list[str]  # every webhook delivery of these was lost
    only_in_webhook: list[str]  # LiteLLM's table lacks these
    legacy: str  # its row has no call id; its webhook deliveries do


@pytest.fixture(scope="module")
def partial_run(root, instance, postgres_server, traffic) -> PartialRun:
    requests = traffic.requests
    only_in_database = [
        next(r.request_key for r in requests if r.deliveries == 2),  # a retried delivery
        next(r.request_key for r in requests if r.late),  # delivered in a later hour
        next(r.request_key for r in requests if r.failed),
    ]
    # One request of each hour, none of the above.
    only_in_webhook = [
        next(
            r.request_key
            for r in requests
            if r.hour == hour and r.request_key not in only_in_database
        )
        for hour in traffic.hours
    ]
    chosen = {*only_in_database, *only_in_webhook}
    legacy = next(r.request_key for r in requests if not r.failed and r.request_key not in chosen)
    rows = [
        as_legacy_row(r) if row_key(r) == legacy else r
        for r in rows_from_traffic(traffic)
        if row_key(r) not in only_in_webhook
    ]
    dsn = postgres_server.create_database(PARTIAL_DATABASE)
    load_rows(dsn, rows)
    land_traffic(without_requests(traffic, set(only_in_database)), root / "partial" / "data")
    run = run_sources(root, instance, "partial", LITELLM_DATABASE_URL=with_password(dsn))
    return PartialRun(run, only_in_database, only_in_webhook, legacy)


@pytest.fixture(scope="module")
def both_configured_run(root, instance, spend_db, spend_log_table):
    with FakeLiteLLM([api_row(r) for r in spend_log_table.rows]) as fake:
        run = run_sources(
            root,
            instance,
            "both_configured",
            LITELLM_DATABASE_URL=spend_db,
            LITELLM_PROXY_URL=fake.url,
            LITELLM_MASTER_KEY=MASTER_KEY,
        )
    return run, fake


# --- 1. the two sources agree ----------------------------------------------------------------


def test_each_source_is_one_run_over_every_hour(database_run, api_run):
    for run in (database_run, api_run[0]):
        partitions = run.materialized_partitions()
        assert set(partitions) == {"litellm_spend_logs", "litellm_webhook_events", "spend_events"}
        assert all(len(hours) == HOURS for hours in partitions.values())
    # one query window per hour of the range, each read to its first empty page
    fake = api_run[1]
    assert api_run[0].spend_logs_metadata()["api_windows"] == HOURS
    assert {r.params["page"] for r in fake.spend_log_requests()} == {"1", "2"}


def test_fetching_hour_by_hour_gives_the_same_rows_and_defect_counts(
    database_run, hour_by_hour_run
):
    assert hour_by_hour_run.spend_events() == database_run.spend_events()
    chunked, whole = hour_by_hour_run.spend_logs_metadata(), database_run.spend_logs_metadata()
    assert {k: v for k, v in chunked.items() if k.startswith(("defects/", "cost_total"))} == {
        k: v for k, v in whole.items() if k.startswith(("defects/", "cost_total"))
    }
    assert chunked["dagster/row_count"] == whole["dagster/row_count"] > 0


def test_database_and_api_give_identical_spend_events(database_run, api_run, spend_log_table):
    from_database, from_api = database_run.spend_events(), api_run[0].spend_events()
    assert from_database.keys() == from_api.keys() == spend_log_table.cost_by_key().keys()
    for key, row in from_database.items():
        assert from_api[key] == row, key

    # Both also equal LiteLLM's own numbers: per request, per hour, in total.
    assert {k: e["cost"] for k, e in from_api.items()} == spend_log_table.cost_by_key()
    cost_by_hour: dict[datetime, Decimal] = defaultdict(Decimal)
    for event in from_api.values():
        cost_by_hour[event["usage_hour"]] += event["cost"]
    assert cost_by_hour == spend_log_table.cost_by_hour()
    assert all(e["source"] == "database" and e["deliveries"] == 1 for e in from_api.values())

    database_meta = database_run.spend_logs_metadata()
    api_meta = api_run[0].spend_logs_metadata()
    assert (database_meta["source"], api_meta["source"]) == ("database", "api")
    assert database_meta["dagster/row_count"] == api_meta["dagster/row_count"]
    assert api_meta["api_rows"] == len(spend_log_table.rows)


def test_errors_and_caching_come_through_the_database_and_the_api(database_run, api_run, traffic):
    events = database_run.spend_events()
    want = {r.request_key: r for r in traffic.requests}
    seen = {"failed": 0, "cache hit": 0, "cached tokens": 0}
    for key, request in want.items():
        got = events[key]
        assert got["error_class"] == request.error_class, key
        assert got["error_code"] == (None if not request.failed else got["error_code"])
        # LiteLLM's table stores str(bool(cache_hit)): no answer becomes 'False'.
        assert got["cache_hit"] is bool(request.cache_hit), key
        assert got["cache_read_tokens"] == request.cache_read_tokens, key
        seen["failed"] += request.failed
        seen["cache hit"] += bool(request.cache_hit)
        seen["cached tokens"] += bool(request.cache_read_tokens)
    assert min(seen.values()) > 0, seen
    failures = [events[k] for k, r in want.items() if r.failed]
    assert all(e["error_code"] for e in failures)  # "429", "500", ...
    assert api_run[0].spend_events() == events  # the REST API reads them the same


# --- 2. and 3. database and webhook together ------------------------------------------------


def test_database_and_webhook_together_count_each_request_once(
    merged_run, traffic, spend_log_table
):
    events = merged_run.spend_events()
    database = spend_log_table.row_by_key()
    traffic_keys = {r.request_key for r in traffic.requests}
    assert events.keys() == database.keys() | traffic_keys
    assert spend_log_table.repriced <= traffic_keys

    for want in traffic.requests:
        got, row = events[want.request_key], database[want.request_key]
        # Seen by both: LiteLLM's row supplies the numbers, the webhook's headers the owner.
        assert got["source"] == "both"
        assert got["deliveries"] == want.deliveries + 1  # webhook deliveries and the row
        assert (got["cost"], got["total_tokens"]) == (exact_spend(row), row["total_tokens"])
        assert (got["department"], got["team"], got["agent"], got["attribution_source"]) == (
            want.department,
            want.team,
            want.agent,
            want.attribution_source,
        ), want.channel
        assert (got["usage_hour"], got["failed"]) == (want.hour, want.failed)
    for key in database.keys() - traffic_keys:  # the planted defects: LiteLLM's table only
        assert events[key]["source"] == "database"

    for key in spend_log_table.repriced:
        webhook_cost = next(lake_cost(r.cost) for r in traffic.requests if r.request_key == key)
        assert events[key]["cost"] == exact_spend(database[key]) != webhook_cost
    total = sum((e["cost"] for e in events.values()), Decimal(0))
    assert total == spend_log_table.total_cost


def test_a_request_in_one_source_only_is_counted_once(partial_run, traffic):
    events = partial_run.run.spend_events()
    assert events.keys() == {r.request_key for r in traffic.requests}
    for want in traffic.requests:
        got = events[want.request_key]
        if want.request_key in partial_run.only_in_database:
            assert (got["source"], got["deliveries"]) == ("database", 1)
        elif want.request_key in partial_run.only_in_webhook:
            assert (got["source"], got["deliveries"]) == ("webhook", want.deliveries)
            assert (got["department"], got["team"], got["agent"]) == (
                want.department,
                want.team,
                want.agent,
            )
        else:
            # The legacy row too: matched to its delivery by its request id, not counted
            # again under it.
            assert (got["source"], got["deliveries"]) == ("both", want.deliveries + 1)
        assert got["cost"] == lake_cost(want.cost)
        assert got["usage_hour"] == want.hour
    assert sum((e["cost"] for e in events.values()), Decimal(0)) == traffic_cost(traffic)
    assert events[partial_run.legacy]["litellm_call_id"] == partial_run.legacy


# --- 4. LiteLLM's data defects ------------------------------------------------------------


def expected_defects(planted: PlantedDefects) -> dict[str, Any]:
    """What ``litellm_spend_logs`` must count in the table ``with_defects`` built.

    The sample traffic itself is clean (its failures carry no tokens). The colliding
    request never reached the table (LiteLLM's insert skipped it), so no request id collides
    there; a cache hit is priced 0 with tokens, correctly, and is not a defect (its
    ``cache_hit`` says why it cost nothing).
    """
    zero_cost = planted.of_kind(ZERO_SPEND)
    return {
        "defects/missing_request_id": 0,
        "defects/missing_call_id": len(planted.of_kind(MISSING_CALL_ID)),
        "defects/duplicate_rows": 0,
        "defects/colliding_request_ids": 0,
        "defects/zero_cost_with_tokens": len(zero_cost),
        "defects/zero_cost_models": sorted({d.row["model"] for d in zero_cost}),
    }


@pytest.mark.parametrize("source", ["database", "api"])
def test_defects_are_counted_and_no_spend_is_lost(
    source, database_run, api_run, traffic, spend_log_table
):
    run = database_run if source == "database" else api_run[0]
    planted = spend_log_table.planted
    metadata = run.spend_logs_metadata()
    assert {k: v for k, v in metadata.items() if k.startswith("defects/")} == expected_defects(
        planted
    )
    assert metadata["dagster/row_count"] == len(traffic.requests) + planted.rows_added

    # Every stored request counts once at its own price: the traffic, the repricing, and
    # the planted requests LiteLLM kept (the colliding one it dropped is nowhere here).
    database = spend_log_table.row_by_key()
    repricing = sum(
        (
            exact_spend(database[r.request_key]) - lake_cost(r.cost)
            for r in traffic.requests
            if r.request_key in spend_log_table.repriced
        ),
        Decimal(0),
    )
    kept = sum((exact_spend(d.row) for d in planted.defects if d.in_database), Decimal(0))
    events = run.spend_events()
    assert len(events) == len(traffic.requests) + planted.rows_added
    assert sum((e["cost"] for e in events.values()), Decimal(0)) == (
        traffic_cost(traffic) + repricing + kept
    )
    for defect in planted.defects:
        key = defect.litellm_call_id or defect.request_id
        assert (key in events) == defect.in_database, defect.kind


# --- 5. both sources configured --------------------------------------------------------------


def test_with_both_sources_set_the_database_wins_and_the_proxy_is_not_asked(
    both_configured_run, database_run
):
    run, fake = both_configured_run
    metadata = run.spend_logs_metadata()
    assert metadata["source"] == "database"
    assert metadata["source_note"] == BOTH_CONFIGURED and "the database wins" in BOTH_CONFIGURED
    assert fake.requests == []
    assert run.spend_events() == database_run.spend_events()


# --- 6. privacy and a gentle reader -----------------------------------------------------------


def test_the_query_names_no_content_column_and_extracts_metadata_values_only():
    for column in ("messages", "response", "proxy_server_request"):
        assert not re.search(rf"\b{column}\b", SPEND_LOGS_SQL), column
    select_list = SPEND_LOGS_SQL.split("FROM", 1)[0]
    assert "*" not in select_list
    # metadata itself is never selected: the server hands back named values of it.
    assert not re.search(r"\bmetadata\b", select_list)
    record = re.search(r"jsonb_to_record\(.*\) AS m\((.*?)\)\s*WHERE", SPEND_LOGS_SQL, re.DOTALL)
    assert [" ".join(c.split()) for c in record.group(1).split(",")] == [
        "user_api_key_alias text",
        "user_api_key_team_alias text",
        "user_api_key_user_id text",
        "error_information jsonb",
        "usage_object jsonb",
    ]
    # Of error_information (which holds the error's message and traceback) only the class and
    # code leave the server; of usage_object only token counts.
    uses = re.findall(r"m\.(error_information|usage_object)(\S*)", select_list)
    assert {use for use in uses if use[0] == "error_information"} == {
        ("error_information", "->>'error_class'"),
        ("error_information", "->>'error_code'"),
    }
    assert all(rest == "," for name, rest in uses if name == "usage_object")
    assert select_list.count("jsonb_path_query_first(m.usage_object") == 4


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def decoded_text(path: Path) -> str:
    # Parquet pages are compressed: search the decoded values, not the bytes.
    if path.suffix == ".parquet":
        return str(pq.read_table(path).to_pylist())
    return path.read_bytes().decode("latin-1")


def test_no_content_key_or_credential_reaches_disk(
    root,
    database_run,
    hour_by_hour_run,
    api_run,
    merged_run,
    partial_run,
    both_configured_run,
    spend_log_table,
):
    # The key hashes LiteLLM stores in api_key and metadata.user_api_key are secrets too.
    key_hashes = {r["api_key"] for r in spend_log_table.rows if r["api_key"]}
    forbidden = (*SECRET_MARKERS, *key_hashes, "user_api_key_hash", MASTER_KEY, DB_PASSWORD)
    files = files_under(root)
    for path in files:
        text = decoded_text(path)
        for marker in forbidden:
            assert marker not in text, (marker, path)
    written = {p.relative_to(root).parts[0] for p in files if p.suffix == ".parquet"}
    assert written == {"database", "hour_by_hour", "api", "merged", "partial", "both_configured"}


def test_the_reading_session_is_read_only_and_time_limited(spend_db):
    limits = SessionLimits(statement_timeout_s=7, lock_timeout_s=1)
    conn = psycopg2.connect(libpq_url(spend_db, limits), connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            settings = {}
            for name in (
                "default_transaction_read_only",
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
                "application_name",
            ):
                cursor.execute(f"SHOW {name}")
                settings[name] = cursor.fetchone()[0]
            assert settings == {
                "default_transaction_read_only": "on",
                "statement_timeout": "7s",
                "lock_timeout": "1s",
                "idle_in_transaction_session_timeout": "7s",
                "application_name": limits.application_name,
            }
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cursor.execute(
                    'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, "startTime", '
                    '"endTime") VALUES (%s, %s, now(), now())',
                    ("written-by-the-reader", "acompletion"),
                )
    finally:
        conn.close()


def test_a_locked_table_fails_the_read_within_the_lock_timeout(
    spend_db, postgres_server, spend_log_table
):
    # A migration holding the table: a reader must give up, not queue LiteLLM's writers
    # behind its own lock request.
    locker = postgres_server.connect(DATABASE)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with locker.cursor() as cursor:
            cursor.execute('LOCK TABLE "LiteLLM_SpendLogs" IN ACCESS EXCLUSIVE MODE')
        limits = SessionLimits(statement_timeout_s=60, lock_timeout_s=1)
        began = time.monotonic()
        reading = pool.submit(read_spend_logs, spend_db, HOUR0, RANGE_END, limits)
        with pytest.raises(SpendLogsDatabaseError) as failed:
            reading.result(timeout=LOCKED_READ_BOUND_S)
        elapsed = time.monotonic() - began
    finally:
        locker.rollback()  # releases the lock, so a read still waiting ends too
        locker.close()
        pool.shutdown(wait=True)
    message = str(failed.value)
    assert "lock timeout" in message and DB_PASSWORD not in message
    assert f"127.0.0.1:{postgres_server.port}/{DATABASE}" in message
    assert 0.9 <= elapsed < 5.0, elapsed
    # Once the lock is gone the same read succeeds.
    table = read_spend_logs(spend_db, HOUR0, RANGE_END, limits)
    assert table.num_rows == len(spend_log_table.rows)
