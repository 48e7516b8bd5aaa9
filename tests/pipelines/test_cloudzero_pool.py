"""One request in flight per CloudZero connection, across runs: the "cloudzero" pool.

Two ``dagster asset materialize`` processes submit different hours at the same time to a
fake AnyCost server that takes seconds per request and records any overlap. With the
project's ``deploy/dagster.local.yaml`` (pool limit 1) the second step waits for the first; without
it, the two requests overlap, which is what the limit is for.
"""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg

from assets.partitions import partition_key
from tests.cbf_rows import hour_rows, ledger_differences, write_cbf_files
from tests.fake_cloudzero import API_KEY, CONNECTION_ID, FakeAnyCost, Fault
from tests.samples import HOUR0

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
# Each request takes this long: more than the two processes' start-ups differ, even under load.
SLOW_SECONDS = 8.0
HOURS = [HOUR0 + timedelta(hours=h) for h in range(4)]


def submit_in_parallel(tmp_path: Path, fake: FakeAnyCost, instance_yaml: str | None):
    home, data_dir = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml or "telemetry:\n  enabled: false\n")
    files = write_cbf_files(data_dir, {h: hour_rows(h, 3) for h in HOURS})
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # create its SQLite storage once, not in both processes
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SPEND_DATA_DIR": str(data_dir),
        "CLOUDZERO_API_KEY": API_KEY,
        "CLOUDZERO_CONNECTION_ID": CONNECTION_ID,
        "CLOUDZERO_API_URL": fake.url,
    }
    env.pop("CLOUDZERO_DRY_RUN", None)
    fake.inject(Fault.slow(SLOW_SECONDS), Fault.slow(SLOW_SECONDS))
    processes = []
    for first, last in ((HOURS[0], HOURS[1]), (HOURS[2], HOURS[3])):
        command = [
            str(DAGSTER), "asset", "materialize", "-m", "pipelines.definitions",
            "--select", "cloudzero_submission",
            "--partition-range", f"{partition_key(first)}...{partition_key(last)}",
        ]  # fmt: skip
        log = open(tmp_path / f"run-{partition_key(first)}.log", "wb")  # noqa: SIM115
        processes.append(
            (
                subprocess.Popen(
                    command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
            )
        )
    for process, log in processes:
        try:
            assert process.wait(timeout=180) == 0, Path(log.name).read_text()[-3000:]
        finally:
            log.close()
    logs = "".join(Path(log.name).read_text() for _, log in processes)
    return files, logs


def test_the_pool_keeps_one_request_in_flight_across_runs(tmp_path):
    with FakeAnyCost() as fake:
        files, logs = submit_in_parallel(
            tmp_path, fake, (REPO_ROOT / "deploy" / "dagster.local.yaml").read_text()
        )
        assert fake.violations == []
        assert "blocked by limit for pool cloudzero" in logs
        assert ledger_differences(fake.ledger, files) == []
        first, second = sorted(fake.requests, key=lambda r: r.received_at)
        assert second.received_at >= first.finished_at


def test_without_the_pool_limit_two_runs_overlap(tmp_path):
    with FakeAnyCost() as fake:
        files, _ = submit_in_parallel(tmp_path, fake, None)
        assert any("concurrent request" in v for v in fake.violations)
        # The refused request (429) was retried, so CloudZero still ends up right.
        assert ledger_differences(fake.ledger, files) == []
