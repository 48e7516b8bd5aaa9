import importlib
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from assets.aggregates import aggregate_rules
from assets.billing import CBF_RULES
from assets.events import SPEND_EVENTS_RULES
from assets.partitions import hourly_partitions, spend_start_date
from assets.schemas import AGGREGATES
from pipelines import definitions
from pipelines.schedules import hourly_spend_schedule, lookback_hours, lookback_window
from tests import samples

PUBLIC_ASSETS = set(samples.PUBLIC_ASSETS)


def asset_graph():
    return definitions.defs.resolve_asset_graph()


def test_the_public_assets_are_hourly_single_run_and_described():
    graph = asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == PUBLIC_ASSETS
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def == hourly_partitions
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.group_name != "default" and node.description
        assert node.kinds, key


def test_partitions_are_utc_hours_from_spend_start_date(monkeypatch):
    assert hourly_partitions.timezone == "UTC"
    assert (
        hourly_partitions.get_first_partition_key()
        == f"{datetime.now(timezone.utc).year}-01-01-00:00"
    )
    monkeypatch.setenv("SPEND_START_DATE", "2025-06-01")
    assert spend_start_date() == "2025-06-01-00:00"
    monkeypatch.setenv("SPEND_START_DATE", "June")
    with pytest.raises(ValueError, match="SPEND_START_DATE must be YYYY-MM-DD"):
        spend_start_date()


def test_jobs_split_the_pipeline_from_the_submission():
    defs = definitions.defs
    graph = asset_graph()
    hourly = defs.resolve_job_def("hourly_spend_job").asset_layer.selected_asset_keys
    submit = defs.resolve_job_def("cloudzero_submit_job").asset_layer.selected_asset_keys
    assert {k.to_user_string() for k in hourly} == PUBLIC_ASSETS - {"cloudzero_submission"}
    assert {k.to_user_string() for k in submit} == {"cloudzero_submission"}
    assert graph.get_all_asset_keys() == hourly | submit


def test_the_sensor_check_and_pool_guard_the_submission():
    defs = definitions.defs
    sensor = defs.resolve_sensor_def("cloudzero_cbf_sensor")
    assert sensor.job_name == "cloudzero_submit_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    hourly = defs.resolve_job_def("hourly_spend_job")
    checks = hourly.asset_layer.asset_graph.asset_check_keys
    # No check stops a whole run: the rules an asset applies as it writes hold back the
    # hours that break them, one by one (assets/hour_rules.py), and the rest are warnings.
    assert not any(asset_graph().get_check_spec(key).blocking for key in checks)
    in_assets = {
        "spend_events": SPEND_EVENTS_RULES,
        "cloudzero_cbf": CBF_RULES,
        **{name: aggregate_rules(spec) for name, spec in AGGREGATES.items()},
    }
    holding = {(asset, rule) for asset, rules in in_assets.items() for rule in rules}
    assert len(holding) == 3 + 3 * 5 + 2
    named = {(key.asset_key.to_user_string(), key.name) for key in checks}
    assert named - holding == {
        ("cloudzero_cbf", "cloudzero_month_within_limits"),
        *(
            ("spend_events", n)
            for n in ("unattributed_share", "zero_cost_with_tokens", "webhook_database_divergence")
        ),
    }
    assert holding <= named
    assert all(asset_graph().get_check_spec(k).partitions_def == hourly_partitions for k in checks)
    submission = asset_graph().get(dg.AssetKey("cloudzero_submission"))
    assert submission.pools == {"cloudzero"}


def test_the_sensors_are_on_by_default_and_restate_through_the_hourly_job():
    sensors = {s.name: s for s in definitions.defs.sensors}
    assert set(sensors) == {
        "cloudzero_cbf_sensor",
        "late_landing_sensor",
        "spend_logs_reconciliation_sensor",
        "source_freshness_sensor",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert sensors["late_landing_sensor"].job_name == "hourly_spend_job"
    assert sensors["spend_logs_reconciliation_sensor"].job_name == "hourly_spend_job"
    assert sensors["spend_logs_reconciliation_sensor"].required_resource_keys == {
        "lake",
        "litellm",
    }


def test_freshness_is_the_pipelines_and_the_sources_not_the_submissions():
    """A quiet hour sends nothing, so cloudzero_submission carries no freshness policy;
    cloudzero_cbf (written every hour) does, and source_freshness_sensor evaluates
    sources_answering outside the runs."""
    graph = asset_graph()
    assert graph.get(dg.AssetKey("cloudzero_submission")).freshness_policy is None
    assert graph.get(
        dg.AssetKey("cloudzero_cbf")
    ).freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=2), warn_window=timedelta(minutes=90)
    )
    key = dg.AssetCheckKey(dg.AssetKey("cloudzero_submission"), "sources_answering")
    spec = graph.get_check_spec(key)
    assert not spec.blocking and spec.partitions_def is None
    for job in ("hourly_spend_job", "cloudzero_submit_job"):
        assert (
            key
            not in definitions.defs.resolve_job_def(job).asset_layer.asset_graph.asset_check_keys
        )
    sensor = definitions.defs.resolve_sensor_def("source_freshness_sensor")
    assert not sensor.targets  # reports the check, requests no run
    assert sensor.required_resource_keys == {"landing", "litellm"}


def test_resources_come_from_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLOUDZERO_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("CLOUDZERO_API_KEY", raising=False)
    try:
        module = importlib.reload(definitions)
        resources = module.defs.resources
        assert resources["lake"].data_dir == dg.EnvVar("SPEND_DATA_DIR")
        assert resources["cloudzero"].api_url == dg.EnvVar("CLOUDZERO_API_URL")
        assert resources["cloudzero"].api_key is None
    finally:
        monkeypatch.undo()
        importlib.reload(definitions)
    assert definitions.defs.resources["lake"].data_dir == "./data"


def test_schedule_restates_the_lookback_window_in_one_run(monkeypatch):
    assert lookback_window(datetime(2026, 3, 1, 0, 10, tzinfo=timezone.utc), 3) == (
        datetime(2026, 2, 28, 21, tzinfo=timezone.utc),
        datetime(2026, 2, 28, 23, tzinfo=timezone.utc),
    )
    monkeypatch.setenv("SPEND_LOOKBACK_HOURS", "5")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 1, 12, 10, tzinfo=timezone.utc)
    )
    request = hourly_spend_schedule(context)
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-01-07:00"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-01-11:00"
    assert hourly_spend_schedule.cron_schedule == "10 * * * *"
    monkeypatch.setenv("SPEND_LOOKBACK_HOURS", "0")
    with pytest.raises(ValueError, match="SPEND_LOOKBACK_HOURS"):
        lookback_hours()


def test_the_dagster_cli_loads_the_workspace(tmp_path):
    root = Path(__file__).resolve().parents[2]
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"DAGSTER_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful for code location litellm_spend" in done.stderr + done.stdout
