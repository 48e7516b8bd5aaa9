"""A late landing for an hour before the schedule's look-back window reaches CloudZero:
late_landing_sensor → hourly_spend_job over that hour → cloudzero_cbf_sensor → a
resubmission of exactly that hour."""

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from assets.partitions import partition_key
from demo.traffic import generate_traffic, land_traffic
from pipelines.sensors import late_hour_requests, late_landing_sensor
from resources.landing import LandingZone
from tests.cbf_rows import ledger_differences
from tests.spend_pipeline import HOURS, spend_pipeline

DAY_NS = 86_400 * 1_000_000_000


def age(paths, mtime_ns: int) -> None:
    for path in paths:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def landing_paths(root):
    return [p for p in root.rglob("*") if p.name.endswith(".ndjson")] + [
        p for p in root.glob("date=*/hour=*")
    ]


def test_a_late_landing_is_restated_and_resubmitted_alone(tmp_path, monkeypatch):
    # The sample hours are months ago: watch back that far.
    days = (datetime.now(timezone.utc) - HOURS[0]).days + 2
    monkeypatch.setenv("SPEND_RECONCILE_DAYS", str(days))
    with spend_pipeline(tmp_path) as pipeline:
        pipeline.materialise()
        [first] = pipeline.tick()
        assert pipeline.submit(first).success

        zone = LandingZone(pipeline.data_dir)
        now_ns = time.time_ns()
        age(landing_paths(Path(zone.root)), now_ns - 2 * DAY_NS)  # everything landed long ago
        pipeline.cursors[late_landing_sensor.name] = str(now_ns - DAY_NS)
        assert pipeline.tick(late_landing_sensor) == []

        late = generate_traffic(HOURS[1], 1, events_per_hour=12, seed=77)
        written = [Path(f) for f in land_traffic(late, pipeline.data_dir, "late").files]
        # Landed just after the watermark, and settled by the next tick.
        settled = int(pipeline.cursors[late_landing_sensor.name]) + 1
        age([*written, *{p.parent for p in written}], settled)

        [restate] = pipeline.tick(late_landing_sensor)
        assert restate.tags["dagster/asset_partition_range_start"] == partition_key(HOURS[1])
        assert restate.tags["dagster/asset_partition_range_end"] == partition_key(HOURS[1])
        job = pipeline.defs.resolve_job_def("hourly_spend_job")
        assert job.execute_in_process(instance=pipeline.instance, tags=restate.tags).success
        assert pipeline.tick(late_landing_sensor) == []  # the watermark moved past it

        before = len(pipeline.fake.requests)
        [resubmit] = pipeline.tick()
        assert resubmit.tags["dagster/asset_partition_range_start"] == partition_key(HOURS[1])
        assert resubmit.tags["dagster/asset_partition_range_end"] == partition_key(HOURS[1])
        assert pipeline.submit(resubmit).success
        sent = {h for r in pipeline.fake.requests[before:] for h in r.hours}
        assert sent == {f"{HOURS[1]:%Y-%m-%dT%H}:00:00Z"}
        assert ledger_differences(pipeline.fake.ledger, pipeline.files()) == []


def test_late_hour_requests_leave_the_look_back_window_to_the_schedule():
    now = datetime(2026, 3, 2, 12, 30, tzinfo=timezone.utc)  # look-back 3: 09:00..11:00
    hours = [now.replace(minute=0) - timedelta(hours=h) for h in (1, 3, 4, 5, 9)]
    requests = late_hour_requests(hours, now, lookback=3, watermark_ns=42)
    spans = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in requests
    ]
    assert spans == [
        ("2026-03-02-03:00", "2026-03-02-03:00"),
        ("2026-03-02-07:00", "2026-03-02-08:00"),
    ]
    assert all(r.run_key.endswith(":42") for r in requests)


def test_hours_landed_between_reads_file_times(tmp_path):
    zone = LandingZone(tmp_path, "w")
    traffic = generate_traffic(HOURS[0], 2, events_per_hour=5, seed=1)
    files = [Path(f) for f in land_traffic(traffic, tmp_path).files]
    base = time.time_ns() - DAY_NS
    age(landing_paths(Path(zone.root)), base)
    newer = [f for f in files if f.parent.name == f"hour={HOURS[1]:%H}"]
    age([*newer, *{f.parent for f in newer}], base + 10)
    watched = HOURS[:3]  # one more than landed: an hour without files is no problem
    assert zone.hours_landed_between(watched, base + 5, base + 20) == {HOURS[1]}
    assert zone.hours_landed_between(watched, base, base + 20) == {HOURS[0], HOURS[1]}
    assert zone.hours_landed_between(watched, base + 11, base + 20) == set()
    assert zone.hours_landed_between(HOURS[1:2], base, base + 20) == {HOURS[1]}  # only those
