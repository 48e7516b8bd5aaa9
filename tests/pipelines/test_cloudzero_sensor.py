"""cloudzero_cbf_sensor on a real Dagster instance, submitting to a fake AnyCost server.

Six hours go through ``hourly_spend_job``; the sensor's requests are executed as
``cloudzero_submit_job`` runs; then hours are restated, emptied or left alone, and the
sensor must request exactly the hours that changed, once.
"""

import shutil
from datetime import timedelta

import dagster as dg
import pytest

from assets.billing import cloudzero_cbf_is_valid
from assets.cbf import cbf_hour_path, load_cbf_file
from demo.traffic import MAPPING_YAML, generate_traffic, land_traffic
from pipelines.definitions import ASSETS, JOBS, resources_from_env
from pipelines.jobs import partition_range_tags
from pipelines.partitions import partition_key
from pipelines.sensors import (
    CHANGE_TAG,
    HourChange,
    change_key,
    cloudzero_cbf_sensor,
    submission_requests,
)
from resources.cloudzero import CloudZeroResource
from resources.lake import hive_dir
from tests.cbf_rows import ledger_differences
from tests.fake_cloudzero import API_KEY, CONNECTION_ID, FakeAnyCost, Fault
from tests.samples import HOUR0

HOURS = [HOUR0 + timedelta(hours=h) for h in range(6)]


class Pipeline:
    """Definitions, instance and fake CloudZero for one test, with the steps it takes."""

    def __init__(self, root, instance, fake):
        self.data_dir, self.instance, self.fake = root / "data", instance, fake
        resources = resources_from_env()
        resources["cloudzero"] = CloudZeroResource(
            api_key=API_KEY,
            connection_id=CONNECTION_ID,
            api_url=fake.url,
            data_dir=str(self.data_dir),
            max_attempts=2,
            retry_base_delay_seconds=0.01,
        )
        self.defs = dg.Definitions(
            assets=ASSETS,
            asset_checks=[cloudzero_cbf_is_valid],
            jobs=JOBS,
            sensors=[cloudzero_cbf_sensor],
            resources=resources,
        )
        self.resources = resources
        self.cursor: str | None = None

    def materialise(self, hours=HOURS):
        tags = partition_range_tags(partition_key(hours[0]), partition_key(hours[-1]))
        job = self.defs.resolve_job_def("hourly_spend_job")
        assert job.execute_in_process(instance=self.instance, tags=tags).success

    def tick(self) -> list[dg.RunRequest]:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            result = cloudzero_cbf_sensor(context)
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def submit(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("cloudzero_submit_job")
        return job.execute_in_process(
            instance=self.instance,
            tags={**request.tags, "dagster/run_key": request.run_key},
            raise_on_error=False,
        )

    def files(self, hours=HOURS):
        return {h: load_cbf_file(cbf_hour_path(self.data_dir, h)) for h in hours}


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    land_traffic(generate_traffic(HOUR0, len(HOURS), events_per_hour=40, seed=5), data_dir)
    (tmp_path / "mapping.yaml").write_text(MAPPING_YAML)
    monkeypatch.setenv("SPEND_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SPEND_ATTRIBUTION_FILE", str(tmp_path / "mapping.yaml"))
    (tmp_path / "home").mkdir()
    with (
        dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance,
        FakeAnyCost() as fake,
    ):
        yield Pipeline(tmp_path, instance, fake)


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
    shutil.rmtree(hive_dir(pipeline.data_dir / "landing" / "litellm_webhook", HOURS[5]))
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
