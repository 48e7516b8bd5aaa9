"""The pipeline benchmarks' data, helpers and one tiny run of the busy-hour script.

Nothing here asserts a speed: the smoke run proves the script still works end to end, that
the pipeline still agrees with the independent DuckDB baseline, and that a disagreement is
refused rather than reported.
"""

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from benchmarks import REPO_ROOT
from benchmarks.busy_hour import HOUR, main, verify
from benchmarks.busy_hour_versions import main as compare_versions
from benchmarks.duckdb_baseline import run_baseline
from benchmarks.month_backfill import HOURS, MONTH_START, landed_month, slice_hours
from benchmarks.pipeline_run import tree_rss_mib
from benchmarks.spend_data import copy_hour_shifted, land_hour, land_month
from resources.cbf import cbf_hour_key, read_cbf_csv, write_cbf_csv
from resources.landing import LandingZone
from resources.storage import storage_at

H0 = datetime(2026, 4, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def busy_hour_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("busy")
    report = work / "report.md"
    assert (
        main(
            ["--events", "3000", "--rounds", "1", "--s3", "--work-dir", str(work)]
            + ["--output", str(report)]
        )
        == 0
    )
    return work, report.read_text()


def test_the_busy_hour_script_agrees_with_the_baseline_and_reports_every_target(busy_hour_run):
    _, report = busy_hour_run
    assert "3,000 requests" in report
    assert "equal the baseline script's rows exactly" in report
    for measure in (
        "summed step compute time",
        "the same, against computing without storing",
        "wall time of the `dagster` CLI process",
        "peak RSS (process tree)",
    ):
        assert f"| {measure} |" in report
    assert "| spend_events |" in report and "| cloudzero_cbf |" in report
    assert "On object storage" in report and "| S3 / local |" in report  # the --s3 run


def test_a_pipeline_result_that_differs_from_the_baseline_is_refused(busy_hour_run):
    work, _ = busy_hour_run
    data_dir = work / "data"
    storage, key = storage_at(str(data_dir)), cbf_hour_key(HOUR)
    rows = read_cbf_csv(storage, key)
    rows[0]["cost/cost"] = str(Decimal(rows[0]["cost/cost"]) + Decimal("0.000001"))
    write_cbf_csv(pa.table({c: [r[c] for r in rows] for c in rows[0]}), storage, key)
    baseline_out = work / "baseline-again"
    run_baseline(data_dir, data_dir / "sample_attribution.yaml", baseline_out)
    with pytest.raises(RuntimeError, match="CBF file differs"):
        verify(data_dir, baseline_out)


def test_two_versions_run_alternately_on_one_landing(tmp_path):
    # This checkout against itself: the script runs each version's CLI and compares them.
    report = tmp_path / "versions.md"
    options = ["--before", str(REPO_ROOT), "--events", "2000", "--rounds", "1"]
    assert compare_versions([*options, "--work-dir", str(tmp_path), "--output", str(report)]) == 0
    text = report.read_text()
    assert "| before |" in text and "| this |" in text and "Ratio this / before: **" in text
    assert "| spend_events |" in text


def test_land_hour_lands_exactly_the_requests_asked_in_batches_of_512(tmp_path):
    landed = land_hour(tmp_path, H0, 1_100, seed=3)
    assert landed.requests == 1_100
    lines = LandingZone(tmp_path).read_hours([H0]).table
    assert lines.num_rows == landed.deliveries > landed.requests  # duplicate deliveries too
    assert len(set(lines["litellm_call_id"].to_pylist())) == 1_100
    zone = LandingZone(tmp_path)
    [entries] = zone.hour_entries([H0])
    assert landed.files == len(entries)
    assert max(len(zone.storage.read(e.key).splitlines()) for e in entries) <= 512


def test_shifted_copies_move_by_whole_days_and_get_their_own_ids(tmp_path):
    land_hour(tmp_path, H0, 50, seed=4)
    zone = LandingZone(tmp_path)
    copied = copy_hour_shifted(zone, H0, days=3)
    original = zone.read_hours([H0]).table.to_pylist()
    shifted = zone.read_hours([H0 + timedelta(days=3)]).table.to_pylist()
    assert copied.deliveries == len(shifted) == len(original)
    for before, after in zip(original, shifted, strict=True):
        assert after["start_time"] - before["start_time"] == 3 * 86_400
        assert after["litellm_call_id"] == before["litellm_call_id"] + "-d3"
        assert after["response_cost"] == before["response_cost"]
        assert after["headers"] == before["headers"]


def test_a_month_is_one_generated_day_and_shifted_copies(tmp_path):
    landed = land_month(tmp_path, H0, hours=26, requests_per_hour=20)
    assert landed.requests == 26 * 20
    zone = LandingZone(tmp_path)
    ids = zone.read_hours([H0 + timedelta(hours=i) for i in range(26)]).table["litellm_call_id"]
    assert len(set(ids.to_pylist())) == 26 * 20


def test_the_month_landing_is_reused_only_for_the_same_size(tmp_path):
    record = {
        "events_per_hour": 10,
        "landed": {"deliveries": 1, "requests": 1, "files": 1, "bytes": 1},
    }
    (tmp_path / "landed.json").write_text(json.dumps(record))
    assert landed_month(tmp_path, 10).requests == 1
    with pytest.raises(SystemExit, match="holds 10 events per hour"):
        landed_month(tmp_path, 11)


def test_the_per_partition_slice_spreads_over_the_month_and_the_day():
    hours = slice_hours(6)
    assert len(set(hours)) == 6
    assert all(MONTH_START <= h < MONTH_START + timedelta(hours=HOURS) for h in hours)
    assert len({h.hour for h in hours}) == 6


def test_tree_rss_counts_the_children_too():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(200 * 2**20); time.sleep(30)"],
    )
    try:
        own = tree_rss_mib(os.getpid())
        deadline = time.monotonic() + 20
        while tree_rss_mib(os.getpid()) <= own + 150 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the child has touched its 200 MiB
        assert tree_rss_mib(os.getpid()) > own + 150
    finally:
        child.kill()
        child.wait()
