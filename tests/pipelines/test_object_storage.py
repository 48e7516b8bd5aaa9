"""Many hosts, simulated on one machine: two receivers and the pipeline share nothing but an S3
bucket (moto's server on 127.0.0.1), and the CBF files come out byte for byte as from a local
run of the same events. The store failing mid-run fails the step clearly; a retry succeeds."""

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest

from assets.partitions import partition_key
from demo.payloads import encode_batch
from demo.population import MAPPING_YAML
from demo.traffic import generate_traffic, land_traffic
from pipelines.definitions import ASSETS, JOBS, resources_from_env
from pipelines.jobs import partition_range_tags
from resources.cbf import cbf_hour_key
from resources.storage import Storage
from tests.receiving import ReceiverProcess
from tests.samples import HOUR0
from tests.spend_pipeline import run_demo

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
HOURS = [HOUR0 + timedelta(hours=h) for h in range(3)]
RANGE_TAGS = partition_range_tags(partition_key(HOURS[0]), partition_key(HOURS[-1]))


@pytest.fixture
def traffic():
    return generate_traffic(HOURS[0], len(HOURS), events_per_hour=40, seed=5)


@pytest.fixture
def mapping(tmp_path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING_YAML)
    return path


def run_job(root: str, mapping: Path, tmp_path: Path) -> dg.ExecuteInProcessResult:
    """``hourly_spend_job`` over the range, in this process, on the storage root ``root``."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPEND_DATA_DIR", root)
        env.setenv("SPEND_ATTRIBUTION_FILE", str(mapping))
        for variable in ("LITELLM_DATABASE_URL", "LITELLM_PROXY_URL", "CLOUDZERO_API_KEY"):
            env.delenv(variable, raising=False)
        defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources_from_env())
        with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
            job = defs.resolve_job_def("hourly_spend_job")
            return job.execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)


def test_two_receivers_and_a_pipeline_on_one_bucket_make_the_local_run_s_cbf_files(
    tmp_path, s3_server, s3_root, traffic, mapping
):
    # The reference: the same events landed and run on a local folder.
    local = tmp_path / "local" / "data"
    land_traffic(traffic, local)
    (tmp_path / "local" / "home").mkdir()
    assert run_job(str(local), mapping, tmp_path / "local").success

    # Host A and host B: a receiver each, taking turns at LiteLLM's batches.
    with (
        ReceiverProcess(s3_root, "--workers", "1", env=s3_server.env(), log_dir=tmp_path) as host_a,
        ReceiverProcess(s3_root, "--workers", "1", env=s3_server.env(), log_dir=tmp_path) as host_b,
    ):
        for n, (_, payloads) in enumerate(traffic.batches):
            receiver = (host_a, host_b)[n % 2]
            answer = httpx.post(
                receiver.callback_url, content=encode_batch(payloads), headers=receiver.auth
            )
            assert answer.status_code == 200, answer.text
    keys = s3_server.objects(bucket(s3_root))
    writers = {
        key.rsplit("/", 1)[-1].rsplit("-", 1)[0] for key in keys if "/_heartbeat/" not in key
    }
    assert len(writers) == 2  # each process wrote its own objects
    heartbeats = {
        key.rsplit("/", 1)[-1].removesuffix(".json") for key in keys if "/_heartbeat/" in key
    }
    assert heartbeats == writers  # and said it was up under the same name

    # Host C: the pipeline through the real dagster CLI, from a folder of its own, with no
    # data directory anywhere on its disk.
    host_c = tmp_path / "host-c"
    (host_c / "home").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "deploy" / "dagster.local.yaml", host_c / "home" / "dagster.yaml")
    env = {
        **os.environ,
        **s3_server.env(),
        "DAGSTER_HOME": str(host_c / "home"),
        "SPEND_DATA_DIR": s3_root,
        "SPEND_ATTRIBUTION_FILE": str(mapping),
    }
    for variable in ("LITELLM_DATABASE_URL", "LITELLM_PROXY_URL", "CLOUDZERO_API_KEY"):
        env.pop(variable, None)
    command = [
        str(DAGSTER), "job", "execute", "-m", "pipelines.definitions", "-j", "hourly_spend_job",
        "--tags", json.dumps(RANGE_TAGS),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=host_c, env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    assert sorted(p.name for p in host_c.iterdir()) == ["home"]

    bucket_storage = Storage(s3_root)
    for hour in HOURS:
        key = cbf_hour_key(hour)
        assert bucket_storage.read(key) == (local / key).read_bytes(), hour
    assert (local / cbf_hour_key(HOURS[0])).stat().st_size > 100  # real rows, not headers


def bucket(root: str) -> str:
    return root.removeprefix("s3://").split("/", 1)[0]


def test_a_step_fails_clearly_while_the_store_is_down_and_succeeds_on_retry(
    tmp_path, s3_server, s3_root, traffic, mapping
):
    land_traffic(traffic, s3_root)
    (tmp_path / "home").mkdir()
    with s3_server.outage():
        failed = run_job(s3_root, mapping, tmp_path)
    assert not failed.success
    failures = [e for e in failed.all_events if e.is_step_failure]
    assert {e.step_key for e in failures} == {"litellm_spend_logs", "litellm_webhook_events"}
    for failure in failures:  # the error names the store's URL and what was being done
        cause = failure.step_failure_data.error.cause
        assert cause.cls_name == "StorageError", cause
        pattern = (
            rf"resources.storage.StorageError: (writing|listing) {re.escape(s3_root)}/\S+ failed: "
        )
        assert re.match(pattern, cause.message), cause.message

    retried = run_job(s3_root, mapping, tmp_path)
    assert retried.success
    assert all(Storage(s3_root).exists(cbf_hour_key(hour)) for hour in HOURS)


def test_the_demo_runs_on_a_bucket_and_writes_no_local_data(tmp_path, s3_server, s3_root):
    done = run_demo(tmp_path, s3_root, hours=2, events_per_hour=30, env=s3_server.env())
    assert f"Parquet lake:      {s3_root}/lake/" in done.stdout
    assert "Cost by model" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing under ./data
    keys = s3_server.objects(bucket(s3_root))
    for folder in ("data/landing/", "data/lake/spend_events/", "data/cbf/", "data/cloudzero/"):
        assert any(key.startswith(folder) for key in keys), folder
