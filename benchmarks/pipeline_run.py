"""One measured ``dagster job execute`` run of ``hourly_spend_job`` over a range of hours.

The run is a real CLI process (the job's in-process executor; anything it starts is counted
too) against its own ``DAGSTER_HOME``. While it runs, the resident memory of the CLI process and
all its descendants is summed every 50 ms; the peak of that sum is the run's peak memory.
Afterwards the run's own events give each step's compute time (``STEP_SUCCESS`` duration)
and the run's start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from assets.partitions import partition_key
from benchmarks import REPO_ROOT
from demo.population import MAPPING_YAML
from pipelines.jobs import partition_range_tags

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

SAMPLE_SECONDS = 0.05
RUN_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class RunMeasure:
    """What one run cost."""

    wall_seconds: float  # the CLI process, from start to exit (imports included)
    run_seconds: float  # Dagster's RUN_START to RUN_SUCCESS
    step_seconds: dict[str, float]  # compute time of each step, from STEP_SUCCESS
    peak_rss_mib: float  # peak of the summed RSS of the CLI process and its children

    @property
    def compute_seconds(self) -> float:
        return sum(self.step_seconds.values())


def add_work_options(parser: argparse.ArgumentParser) -> None:
    """``--work-dir`` and ``--output``, as both pipeline benchmarks take them."""
    parser.add_argument("--work-dir", type=Path, help="kept afterwards (default: a temp dir)")
    parser.add_argument("--output", type=Path, help="write the Markdown report here too")


@contextmanager
def work_dir(kept: Path | None, prefix: str) -> Iterator[Path]:
    """``kept`` (left in place, so its landing can be reused), or a temporary directory
    removed afterwards."""
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        yield Path(temporary)


def pipeline_environment(
    data_dir: Path,
    home: Path,
    start_date: str,
    postgres: PostgresServer | None = None,
    checkout: Path = REPO_ROOT,
) -> dict[str, str]:
    """The environment of a run: its own lake, instance and the sample attribution mapping.

    The instance is ``deploy/dagster.local.yaml`` (SQLite, as ``make demo``), or with
    ``postgres`` the production ``deploy/dagster.yaml`` on a fresh database of that server.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = "dagster.yaml" if postgres else "dagster.local.yaml"
    shutil.copy(checkout / "deploy" / config, home / "dagster.yaml")
    mapping = data_dir / "sample_attribution.yaml"
    mapping.write_text(MAPPING_YAML)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SPEND_", "LITELLM_"))},
        "DAGSTER_HOME": str(home),
        "SPEND_DATA_DIR": str(data_dir),
        "SPEND_START_DATE": start_date,
        "SPEND_ATTRIBUTION_FILE": str(mapping),
    }
    if postgres:
        database = "dagster_" + "".join(c if c.isalnum() else "_" for c in home.name)
        postgres.create_database(database)
        env |= {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(postgres.port),
            "DAGSTER_PG_DB": database,
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        }
    return env


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def tree_rss_mib(root: int) -> float:
    """Summed RSS of ``root`` and every process below it."""
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss_kib(pid)
        todo += _children(pid)
    return total / 1024


class PeakSampler:
    """Samples ``tree_rss_mib(pid)`` on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, tree_rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def materialize(
    env: Mapping[str, str], first: datetime, last: datetime, checkout: Path = REPO_ROOT
) -> RunMeasure:
    """Run ``hourly_spend_job`` over ``first``..``last`` (inclusive) as one run, as a
    single-run backfill of its Partitions page does, with the code of ``checkout``."""
    tags = partition_range_tags(partition_key(first), partition_key(last))
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "job",
        "execute",
        "-m",
        "pipelines.definitions",
        "-j",
        "hourly_spend_job",
        "--tags",
        json.dumps(tags),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=checkout,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = PeakSampler(process.pid)
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    finally:
        process.kill()
        peak = sampler.stop()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"dagster run failed ({process.returncode}):\n{stderr[-3000:]}")
    run_seconds, steps = _run_events(env)
    return RunMeasure(wall, run_seconds, steps, peak)


def _run_events(env: Mapping[str, str]) -> tuple[float, dict[str, float]]:
    """Dagster's run time and each step's compute time, from the run's own events."""
    saved = dict(os.environ)
    os.environ.update(env)  # the instance's config reads DAGSTER_PG_* from the environment
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            [run] = instance.get_runs(limit=1)
            if run.status != dg.DagsterRunStatus.SUCCESS:
                raise RuntimeError(f"run {run.run_id} ended {run.status}")
            records = instance.get_records_for_run(run.run_id, limit=1_000_000).records
    finally:
        os.environ.clear()
        os.environ.update(saved)
    steps, times = {}, {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_SUCCESS":
            steps[event.step_key] = event.event_specific_data.duration_ms / 1000
        elif event.event_type_value in ("PIPELINE_START", "PIPELINE_SUCCESS"):
            times[event.event_type_value] = record.event_log_entry.timestamp
    return times["PIPELINE_SUCCESS"] - times["PIPELINE_START"], steps
