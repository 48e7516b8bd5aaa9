"""deploy/dagster.yaml on a real PostgreSQL server: a 48-hour backfill through the real
``dagster`` CLI is one run with 48 materialisations per asset, stored in PostgreSQL, and the
schedule and sensor evaluate against that instance."""

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from assets.partitions import partition_key
from demo.traffic import generate_traffic, land_traffic
from pipelines.definitions import ASSETS, JOBS, resources_from_env
from pipelines.schedules import hourly_spend_schedule
from pipelines.sensors import cloudzero_cbf_sensor
from resources.cbf import cbf_hour_key
from tests.samples import HOUR0

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
HOURS = 48
LAKE_ASSETS = [a.key.to_user_string() for a in ASSETS if a.key.path[0] != "cloudzero_submission"]


@pytest.fixture(scope="module")
def production(postgres_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("production")
    postgres_server.create_database("dagster_production")
    home, data_dir = root / "home", root / "data"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    land_traffic(generate_traffic(HOUR0, HOURS, events_per_hour=20, seed=3), data_dir)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_DB": "dagster_production",
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "SPEND_DATA_DIR": str(data_dir),
    }
    last = HOUR0 + timedelta(hours=HOURS - 1)
    command = [
        str(DAGSTER), "asset", "materialize", "-m", "pipelines.definitions",
        "--select", "*cloudzero_cbf",
        "--partition-range", f"{partition_key(HOUR0)}...{partition_key(last)}",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance, postgres_server.dsn("dagster_production"), data_dir


def test_the_instance_is_postgres_with_queued_runs(production):
    instance, _, _ = production
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_a_48_hour_backfill_is_one_run_with_48_materialisations_per_asset(production):
    instance, dsn, _ = production
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone() == (1,)
        cursor.execute(
            "SELECT asset_key, count(DISTINCT partition) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key"
        )
        per_asset = dict(cursor.fetchall())
    assert per_asset == {dg.AssetKey(a).to_string(): HOURS for a in LAKE_ASSETS}


def test_schedule_and_sensor_ticks_against_the_instance(production):
    instance, _, data_dir = production
    tick_time = HOUR0 + timedelta(hours=HOURS, minutes=10)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick_time) as ctx:
        request = hourly_spend_schedule(ctx)
    first = HOUR0 + timedelta(hours=HOURS - 3)
    assert request.tags["dagster/asset_partition_range_start"] == partition_key(first)
    window = [first + timedelta(hours=h) for h in range(3)]
    before = {h: hashlib.sha256((data_dir / cbf_hour_key(h)).read_bytes()).digest() for h in window}

    # The schedule's run restates the look-back window: the CBF files come out byte-identical.
    defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources_from_env())
    result = defs.resolve_job_def("hourly_spend_job").execute_in_process(
        instance=instance, tags=request.tags
    )
    assert result.success and result.dagster_run.tags["spend/lane"] == "lake"
    after = {h: hashlib.sha256((data_dir / cbf_hour_key(h)).read_bytes()).digest() for h in window}
    assert after == before

    # No receipts yet (dry run): the sensor asks for all 48 hours, as one run.
    resources = resources_from_env()
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        [submission] = cloudzero_cbf_sensor(ctx).run_requests
    assert submission.tags["dagster/asset_partition_range_start"] == partition_key(HOUR0)
    last = HOUR0 + timedelta(hours=HOURS - 1)
    assert submission.tags["dagster/asset_partition_range_end"] == partition_key(last)
