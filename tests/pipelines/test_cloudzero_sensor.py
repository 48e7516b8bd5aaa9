"""cloudzero_cbf_sensor on a real Dagster instance, submitting to a fake AnyCost server.

Six hours go through ``hourly_spend_job``; the sensor's requests are executed as
``cloudzero_submit_job`` runs; then hours are restated, emptied or left alone, and the
sensor must request exactly the hours that changed, once.
"""

import shutil

import dagster as dg
import pytest

from assets.partitions import partition_key
from demo.traffic import generate_traffic, land_traffic
from pipelines.sensors import (
    CHANGE_TAG,
    HourChange,
    change_key,
    submission_requests,
)
from resources.lake import hive_prefix
from tests.cbf_rows import ledger_differences
from tests.fake_cloudzero import Fault
from tests.spend_pipeline import HOURS, Pipeline, spend_pipeline


@pytest.fixture
def pipeline(tmp_path):
    with spend_pipeline(tmp_path) as running:
        yield running


def ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    return [
        (
            r.tags["dagster/asset_partition_range_start"],
            r.tags["dagster/asset_partition_range_end"],
        )
        for r in requests
    ]


def test_sensor_requests_exactly_the_changed_hours_once(pipeline: Pipeline):
    pipeline.materialise()
    [first] = pipeline.tick()
    assert ranges([first]) == [(partition_key(HOURS[0]), partition_key(HOURS[-1]))]
    assert first.run_key.startswith(f"{partition_key(HOURS[0])}..{partition_key(HOURS[-1])}:")
    assert pipeline.submit(first).success
    assert ledger_differences(pipeline.fake.ledger, pipeline.files()) == []
    assert pipeline.fake.violations == []

    # No new materialization: nothing. Re-materialised unchanged: still nothing.
    assert pipeline.tick() == []
    pipeline.materialise()
    assert pipeline.tick() == []
    requests_before = len(pipeline.fake.requests)

    # Restate hours 2 and 4 (late traffic), empty hour 5.
    for seed, hour in enumerate((HOURS[2], HOURS[4]), start=90):
        late = generate_traffic(hour, 1, events_per_hour=15, seed=seed)
        land_traffic(late, pipeline.data_dir, "late")
    shutil.rmtree(pipeline.data_dir / hive_prefix("landing/litellm_webhook", HOURS[5]))
    pipeline.materialise()
    requests = pipeline.tick()
    assert ranges(requests) == [
        (partition_key(HOURS[2]), partition_key(HOURS[2])),
        (partition_key(HOURS[4]), partition_key(HOURS[5])),
    ]
    for request in requests:
        assert pipeline.submit(request).success
    assert ledger_differences(pipeline.fake.ledger, pipeline.files()) == []
    sent = pipeline.fake.requests[requests_before:]
    assert sorted({h for r in sent for h in r.hours}) == [
        f"{h:%Y-%m-%dT%H}:00:00Z" for h in (HOURS[2], HOURS[4], HOURS[5])
    ]
    assert pipeline.fake.hour_totals()[f"{HOURS[5]:%Y-%m-%dT%H}:00:00Z"] == 0

    # Nothing changed since: the restated hours are not sent again.
    pipeline.materialise()
    assert pipeline.tick() == []


def test_an_unchanged_rematerialisation_before_submission_repeats_the_run_key(pipeline):
    pipeline.materialise(HOURS[:2])
    [request] = pipeline.tick()
    pipeline.materialise(HOURS[:2])
    [again] = pipeline.tick()
    assert again.run_key == request.run_key  # Dagster launches a run key once per sensor


def test_a_failed_submission_is_requested_again(pipeline):
    pipeline.materialise(HOURS[:1])
    [request] = pipeline.tick()
    pipeline.fake.inject(Fault.status(503), Fault.status(503))
    result = pipeline.submit(request)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "HTTP 503" in failure and "2 attempts" in failure
    pipeline.materialise(HOURS[:1])
    [retry] = pipeline.tick()
    assert retry.run_key != request.run_key  # the hour's receipt now says "uncertain"
    assert pipeline.submit(retry).success
    assert ledger_differences(pipeline.fake.ledger, pipeline.files(HOURS[:1])) == []


def test_run_requests_group_contiguous_hours_and_count_failed_runs():
    changes = [HourChange(HOURS[h], f"sha{h}", "none") for h in (0, 1, 2, 4)]
    first, second = submission_requests(changes, {change_key(changes[3:]): 2})
    assert ranges([first, second]) == [
        (partition_key(HOURS[0]), partition_key(HOURS[2])),
        (partition_key(HOURS[4]), partition_key(HOURS[4])),
    ]
    assert first.run_key == first.tags[CHANGE_TAG] == change_key(changes[:3])
    assert second.run_key == f"{change_key(changes[3:])}:retry-2"
    restated = [HourChange(HOURS[0], "sha-new", "sha0"), *changes[1:3]]
    assert change_key(restated) != change_key(changes[:3])
