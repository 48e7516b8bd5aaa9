"""The real pipeline on a temporary instance and data dir, submitting to a fake CloudZero."""

from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from assets.billing import cloudzero_cbf_is_valid
from assets.partitions import partition_key
from demo.traffic import MAPPING_YAML, generate_traffic, land_traffic
from pipelines.definitions import ASSETS, JOBS, resources_from_env
from pipelines.jobs import partition_range_tags
from pipelines.sensors import cloudzero_cbf_sensor, late_landing_sensor
from resources.cbf import cbf_hour_path, load_cbf_file
from resources.cloudzero import CloudZeroResource
from tests.fake_cloudzero import API_KEY, CONNECTION_ID, FakeAnyCost
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
            sensors=[cloudzero_cbf_sensor, late_landing_sensor],
            resources=resources,
        )
        self.resources = resources
        self.cursors: dict[str, str | None] = {}

    def materialise(self, hours=HOURS):
        tags = partition_range_tags(partition_key(hours[0]), partition_key(hours[-1]))
        job = self.defs.resolve_job_def("hourly_spend_job")
        assert job.execute_in_process(instance=self.instance, tags=tags).success

    def tick(self, sensor=cloudzero_cbf_sensor) -> list[dg.RunRequest]:
        cursor = self.cursors.get(sensor.name)
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=self.resources
        ) as context:
            result = sensor(context)
        self.cursors[sensor.name] = result.cursor
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


@contextmanager
def spend_pipeline(tmp_path: Path):
    """Six hours of sample traffic landed, environment set, a temp instance and a fake."""
    data_dir = tmp_path / "data"
    land_traffic(generate_traffic(HOUR0, len(HOURS), events_per_hour=40, seed=5), data_dir)
    (tmp_path / "mapping.yaml").write_text(MAPPING_YAML)
    (tmp_path / "home").mkdir()
    with (
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance,
        FakeAnyCost() as fake,
    ):
        env.setenv("SPEND_DATA_DIR", str(data_dir))
        env.setenv("SPEND_ATTRIBUTION_FILE", str(tmp_path / "mapping.yaml"))
        yield Pipeline(tmp_path, instance, fake)


@contextmanager
def sample_range(root: Path, hours: int, events_per_hour: int, seed: int = 11):
    """``hours`` hours of sample traffic from HOUR0 landed under ``root/data``, with the
    environment set (no CloudZero key: dry run), a temp instance and the code location's
    assets and jobs. Yields ``(traffic, data_dir, defs, instance, range tags)``; EnvVar
    values resolve when a run starts, so the variables stay set until the block ends."""
    data_dir = root / "data"
    traffic = generate_traffic(HOUR0, hours, events_per_hour=events_per_hour, seed=seed)
    land_traffic(traffic, data_dir)
    (root / "mapping.yaml").write_text(MAPPING_YAML)
    tags = partition_range_tags(
        partition_key(HOUR0), partition_key(HOUR0 + timedelta(hours=hours - 1))
    )
    (root / "dagster_home").mkdir()
    with (
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance,
    ):
        env.setenv("SPEND_DATA_DIR", str(data_dir))
        env.setenv("SPEND_ATTRIBUTION_FILE", str(root / "mapping.yaml"))
        env.delenv("CLOUDZERO_API_KEY", raising=False)
        defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources_from_env())
        yield traffic, data_dir, defs, instance, tags
