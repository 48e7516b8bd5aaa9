"""An hour over the REST API's 10,000-row count cap, through real Dagster runs.

25,000 requests in one hour are rows of ``"LiteLLM_SpendLogs"`` in a real PostgreSQL and
``/spend/logs/v2`` pages of a fake proxy on 127.0.0.1 that counts ``total`` as LiteLLM
1.106.2 does. Read through the API, the hour is narrowed until every window's total is exact,
and gives the same rows and the same exact cost as the database read.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.partitions import partition_key
from pipelines.definitions import ASSETS, resources_from_env
from pipelines.jobs import partition_range_tags
from resources.lake import LakeResource
from tests.fake_litellm import MASTER_KEY, FakeLiteLLM, api_row
from tests.samples import HOUR0
from tests.spend_log_rows import load_rows, spend_log_row

ROWS = 25_000
LATE_ROW = 5  # 720 ms into the hour
DATABASE = "api_busy_hour"
SOURCE_VARIABLES = ("LITELLM_DATABASE_URL", "LITELLM_PROXY_URL", "LITELLM_MASTER_KEY")
SOURCES_JOB = dg.define_asset_job(
    "busy_hour_sources_job",
    selection=dg.AssetSelection.assets(
        "litellm_spend_logs", "litellm_webhook_events", "spend_events"
    ),
)


def busy_hour_rows() -> list[dict[str, Any]]:
    """``ROWS`` requests spread over ``HOUR0``, and one just before and after it.

    Spend is a random float with 17 significant digits, so its 18-decimal rounding in the
    lake is exercised; content columns are left empty to keep the load quick.
    """
    rng = random.Random(2503)
    moments = [HOUR0 + timedelta(milliseconds=i * 3_600_000 // ROWS) for i in range(ROWS)]
    moments += [HOUR0 - timedelta(milliseconds=1), HOUR0 + timedelta(hours=1)]
    return [
        spend_log_row(
            request_id=f"chatcmpl-busy-{i:05d}",
            litellm_call_id=f"call-busy-{i:05d}",
            startTime=moment,
            spend=rng.random() / 100,
            messages={},
            response={},
            proxy_server_request={},
        )
        for i, moment in enumerate(moments)
    ]


def exact_cost(rows: list[dict[str, Any]]) -> Decimal:
    """The hour's cost as the lake keeps it: each float's shortest text, to 18 places."""
    step = Decimal("1e-18")
    return sum(
        (Decimal(repr(r["spend"])).quantize(step, rounding=ROUND_HALF_UP) for r in rows),
        Decimal(0),
    )


def run_hour(data_dir: Path, instance: dg.DagsterInstance, **env: str) -> dg.ExecuteInProcessResult:
    key = partition_key(HOUR0)
    with pytest.MonkeyPatch.context() as patch:
        for variable in SOURCE_VARIABLES:
            patch.delenv(variable, raising=False)
        patch.setenv("SPEND_DATA_DIR", str(data_dir))
        for variable, value in env.items():
            patch.setenv(variable, value)
        defs = dg.Definitions(assets=ASSETS, jobs=[SOURCES_JOB], resources=resources_from_env())
        result = defs.resolve_job_def(SOURCES_JOB.name).execute_in_process(
            instance=instance, tags=partition_range_tags(key, key)
        )
    assert result.success
    return result


def spend_events(data_dir: Path) -> dict[str, dict[str, Any]]:
    path = data_dir / LakeResource(data_dir=str(data_dir)).hour_key("spend_events", HOUR0)
    return {r["request_key"]: r for r in pq.read_table(path).to_pylist()}


def spend_logs_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("litellm_spend_logs")
    ]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def test_an_hour_over_the_count_cap_reads_the_same_through_the_api_as_the_database(
    tmp_path, postgres_server
):
    rows = busy_hour_rows()
    in_hour = rows[:ROWS]
    dsn = postgres_server.create_database(DATABASE)
    load_rows(dsn, rows)

    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        from_database = run_hour(tmp_path / "database", instance, LITELLM_DATABASE_URL=dsn)
        # One row reaches LiteLLM while the first quarter hour is paged: it lands before the
        # offset of page 2, so that pass skips it and comes up one short of its exact total.
        served = [api_row(r) for r in rows]
        written_late = served.pop(LATE_ROW)
        with FakeLiteLLM(served) as fake:
            fake.inject("ok", "ok", "ok", lambda fake: fake.add_rows([written_late]))
            from_api = run_hour(
                tmp_path / "api",
                instance,
                LITELLM_PROXY_URL=fake.url,
                LITELLM_MASTER_KEY=MASTER_KEY,
            )
            capped_first_pages = [
                r
                for r in fake.spend_log_requests()
                if fake.rows_counted(r.params["start_date"], r.params["end_date"]) > 10_000
            ]

    database_events, api_events = (
        spend_events(tmp_path / "database"),
        spend_events(tmp_path / "api"),
    )
    assert len(database_events) == ROWS
    assert api_events == database_events
    assert api_events.keys() == {f"call-busy-{i:05d}" for i in range(ROWS)}
    cost = sum((e["cost"] for e in api_events.values()), Decimal(0))
    assert cost == exact_cost(in_hour)

    metadata = spend_logs_metadata(from_api)
    assert metadata["source"] == "api" and metadata["api_rows"] == ROWS
    assert metadata["dagster/row_count"] == spend_logs_metadata(from_database)["dagster/row_count"]
    # 25,000 rows: the hour and both halves are capped; the four quarters are exact.
    assert (metadata["api_windows"], metadata["api_windows_split"]) == (1, 3)
    assert metadata["api_narrowed_windows"] == 6
    assert metadata["api_window_rereads"] == 1
    assert {r.params["page"] for r in capped_first_pages} == {"1"}
    assert len(capped_first_pages) == 3
