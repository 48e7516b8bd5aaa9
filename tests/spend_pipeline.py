"""The real pipeline on a temporary instance and data dir, submitting to a fake CloudZero."""

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import partition_key
from demo.population import MAPPING_YAML
from demo.traffic import Traffic, generate_traffic, land_traffic
from pipelines.definitions import ASSETS, CHECKS, JOBS, SENSORS, resources_from_env
from pipelines.jobs import partition_range_tags
from pipelines.sensors import cloudzero_cbf_sensor
from resources.cbf import load_cbf_hours
from resources.cloudzero import CloudZeroResource
from resources.lake import LakeResource
from resources.storage import storage_at
from tests.fake_cloudzero import API_KEY, CONNECTION_ID, FakeAnyCost
from tests.samples import HOUR0

HOURS = [HOUR0 + timedelta(hours=h) for h in range(6)]
CBF = dg.AssetKey("cloudzero_cbf")
# Settings of the machine running the tests that would change what a run reads or warns about.
ISOLATED_VARIABLES = (
    "LITELLM_DATABASE_URL",
    "LITELLM_PROXY_URL",
    "LITELLM_MASTER_KEY",
    "CLOUDZERO_API_KEY",
    "SPEND_UNATTRIBUTED_WARN_SHARE",
    "SPEND_SOURCE_DIVERGENCE_WARN_SHARE",
)


def run_demo(
    home: Path, data_dir: str, hours: int, events_per_hour: int, env: Mapping[str, str] = {}
) -> subprocess.CompletedProcess[str]:
    """``python -m demo`` (what ``make demo`` runs) in a subprocess from ``home``, as a user
    runs it: its own instance under ``home``, the data under ``data_dir``, and none of this
    machine's mapping file, CloudZero key or start date."""
    environ = {
        **os.environ,
        **env,
        "SPEND_DATA_DIR": data_dir,
        "DAGSTER_HOME": str(home / "home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    for variable in ("SPEND_ATTRIBUTION_FILE", "CLOUDZERO_API_KEY", "SPEND_START_DATE"):
        environ.pop(variable, None)
    command = [sys.executable, "-m", "demo", "--hours", str(hours)]
    command += ["--events-per-hour", str(events_per_hour)]
    done = subprocess.run(
        command, cwd=home, env=environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


class Pipeline:
    """The code location's assets, checks, jobs and sensors on a temp instance, sending to a
    fake CloudZero, with the steps a test takes."""

    def __init__(self, root: Path, instance, fake, traffic: Traffic, hours=HOURS):
        self.data_dir, self.instance, self.fake = root / "data", instance, fake
        self.traffic, self.hours = traffic, list(hours)
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
            asset_checks=CHECKS,
            jobs=JOBS,
            sensors=SENSORS,
            resources=resources,
        )
        self.resources = resources
        self.cursors: dict[str, str | None] = {}

    def run(self, hours: Sequence[datetime] | None = None) -> dg.ExecuteInProcessResult:
        """``hourly_spend_job`` over ``hours`` (default: all), failures returned, not raised."""
        hours = hours or self.hours
        tags = partition_range_tags(partition_key(hours[0]), partition_key(hours[-1]))
        job = self.defs.resolve_job_def("hourly_spend_job")
        return job.execute_in_process(instance=self.instance, tags=tags, raise_on_error=False)

    def materialise(self, hours: Sequence[datetime] | None = None) -> None:
        assert self.run(hours).success

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

    def files(self, hours: Sequence[datetime] | None = None):
        hours = hours or self.hours
        files = load_cbf_hours(storage_at(str(self.data_dir)), hours)
        assert sorted(files) == sorted(hours)
        return files

    def cbf_materializations(self) -> int:
        return len(self.instance.fetch_materializations(CBF, limit=1000).records)

    def spend_events(self):
        return LakeResource(data_dir=str(self.data_dir)).read_hours("spend_events", self.hours)


@contextmanager
def sample_environment(root: Path, traffic: Traffic):
    """``traffic`` landed under ``root/data``, the mapping file written, the environment set
    (no LiteLLM source, no CloudZero key) and a temp instance. EnvVar values resolve when a
    run starts, so the variables stay set until the block ends. Yields ``(data_dir,
    instance, env)``; ``env`` sets more variables for the block."""
    data_dir = root / "data"
    land_traffic(traffic, data_dir)
    (root / "mapping.yaml").write_text(MAPPING_YAML)
    (root / "dagster_home").mkdir()
    with (
        pytest.MonkeyPatch.context() as env,
        dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance,
    ):
        env.setenv("SPEND_DATA_DIR", str(data_dir))
        env.setenv("SPEND_ATTRIBUTION_FILE", str(root / "mapping.yaml"))
        for variable in ISOLATED_VARIABLES:
            env.delenv(variable, raising=False)
        yield data_dir, instance, env


@contextmanager
def spend_pipeline(tmp_path: Path, hours=HOURS, seed: int = 5):
    """Sample traffic of ``hours`` landed, environment set, a temp instance and a fake."""
    traffic = generate_traffic(hours[0], len(hours), events_per_hour=40, seed=seed)
    with sample_environment(tmp_path, traffic) as (_, instance, _), FakeAnyCost() as fake:
        yield Pipeline(tmp_path, instance, fake, traffic, hours)


@contextmanager
def sample_range(root: Path, hours: int, events_per_hour: int, seed: int = 11):
    """``hours`` hours of sample traffic from HOUR0, dry run, and the code location's assets
    and jobs. Yields ``(traffic, data_dir, defs, instance, range tags)``."""
    traffic = generate_traffic(HOUR0, hours, events_per_hour=events_per_hour, seed=seed)
    tags = partition_range_tags(
        partition_key(HOUR0), partition_key(HOUR0 + timedelta(hours=hours - 1))
    )
    with sample_environment(root, traffic) as (data_dir, instance, _):
        defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources_from_env())
        yield traffic, data_dir, defs, instance, tags
