"""One busy hour: a million webhook events through the whole pipeline in one Dagster run.

Setup (not measured): ``--events`` unique requests of real-shaped sample traffic for
2026-04-15 13:00 UTC (plus ~2% duplicate deliveries) are landed through
``LandingZone.write_events`` in batches of 512 (``benchmarks/spend_data.py``).

Each round measures, alternately:

* **baseline**: ``benchmarks/duckdb_baseline.py`` in its own process, one hand-written
  DuckDB script from the same landing files to the same outputs (spend_events, the five
  aggregates and the CBF file, written);
* **compute-only baseline**: the same script computing every output into memory and writing
  nothing (the work without storing it);
* **pipeline**: ``dagster job execute -j hourly_spend_job`` for that hour (a real CLI run on a
  fresh instance and an empty lake): ``litellm_webhook_events`` →
  ``spend_events`` → the five aggregates → ``cloudzero_cbf``, with every asset check.

The pipeline's aggregates and CBF file must equal the baseline's rows exactly (and its
spend_events the same requests and money), or no number is reported.

    .venv/bin/python -m benchmarks.busy_hour --output benchmarks/results/busy_hour.md
    .venv/bin/python -m benchmarks.busy_hour --events 50000 --rounds 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from assets.schemas import AGGREGATES
from benchmarks import REPO_ROOT, machine_section, publish
from benchmarks.machine import describe_machine
from benchmarks.object_storage import bucket_with_landing, clear_outputs
from benchmarks.pipeline_run import (
    PeakSampler,
    RunMeasure,
    add_work_options,
    materialize,
    pipeline_environment,
    work_dir,
)
from benchmarks.spend_data import land_hour
from resources.cbf import cbf_hour_key, parse_cbf, read_cbf_csv
from resources.storage import storage_at
from tests.s3_server import S3Server

HOUR = datetime(2026, 4, 15, 13, tzinfo=timezone.utc)
START_DATE = "2026-04-01"
PACKAGES = {"pipeline stack": ["dagster", "duckdb", "pyarrow"]}
CODE_UNDER_TEST = ["assets", "resources", "pipelines", "benchmarks"]
TARGETS = {"compute_ratio": 1.5, "wall_seconds": 30.0, "peak_gib": 4.0, "s3_ratio": 1.5}


@dataclass(frozen=True)
class BaselineMeasure:
    seconds: float  # the query, connection included (from inside the process)
    wall_seconds: float  # the whole process, interpreter start included
    peak_rss_mib: float


def measure_baseline(data_dir: Path, mapping: Path, out: Path | None) -> BaselineMeasure:
    """The baseline script in its own process: writing its outputs under ``out``, or with
    ``out`` None computing them only."""
    command = [sys.executable, "-m", "benchmarks.duckdb_baseline", str(data_dir), str(mapping)]
    command += [str(out)] if out is not None else []
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    sampler = PeakSampler(process.pid)
    stdout, _ = process.communicate(timeout=600)
    peak = sampler.stop()
    if process.returncode:
        raise RuntimeError(f"baseline failed with exit code {process.returncode}")
    return BaselineMeasure(json.loads(stdout)["seconds"], time.perf_counter() - started, peak)


def _sorted_rows(table) -> list[tuple]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def verify(data_dir: Path, baseline_out: Path) -> int:
    """The pipeline's aggregates and CBF rows equal the baseline's, its spend_events the same
    requests and money; returns the CBF rows."""
    lake = data_dir / "lake"
    for asset in AGGREGATES:
        mine = pq.read_table(next((lake / asset).glob("*/*/*.parquet")))
        theirs = pq.read_table(baseline_out / f"{asset}.parquet").select(mine.column_names)
        if _sorted_rows(mine) != _sorted_rows(theirs.cast(mine.schema)):
            raise RuntimeError(f"{asset} differs from the baseline's rows")
    events = pq.read_table(next((lake / "spend_events").glob("*/*/*.parquet")))
    theirs = pq.read_table(baseline_out / "spend_events.parquet")
    for column in ("request_key", "cost", "department", "team", "agent", "provider", "model"):
        if sorted(events[column].to_pylist(), key=str) != sorted(
            theirs[column].to_pylist(), key=str
        ):
            raise RuntimeError(f"spend_events.{column} differs from the baseline's")
    files = read_cbf_csv(storage_at(str(data_dir)), cbf_hour_key(HOUR))
    mine = sorted(tuple(r.values()) for r in files)  # in the file's column order
    baseline_rows = parse_cbf((baseline_out / "cbf.csv").read_bytes(), "baseline cbf.csv")
    if mine != sorted(tuple(r.values()) for r in baseline_rows):
        raise RuntimeError("the CBF file differs from the baseline's CBF rows")
    return len(mine)


def fresh_outputs(data_dir: Path) -> None:
    for folder in ("lake", "cbf"):
        shutil.rmtree(data_dir / folder, ignore_errors=True)


def render(
    options: argparse.Namespace,
    command: str,
    machine: dict[str, str],
    landed: object,
    rounds: list[tuple[BaselineMeasure, RunMeasure]],
    cbf_row_count: int,
    on_s3: list[RunMeasure],
    compute_only: list[BaselineMeasure],
) -> str:
    base = statistics.median(b.seconds for b, _ in rounds)
    base_compute = statistics.median(b.seconds for b in compute_only)
    compute = statistics.median(r.compute_seconds for _, r in rounds)
    wall = statistics.median(r.wall_seconds for _, r in rounds)
    peak = max(r.peak_rss_mib for _, r in rounds)
    base_peak = max(b.peak_rss_mib for b, _ in rounds)
    ratio = compute / base

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        "# One busy hour through the pipeline",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Command: `{command}`",
        "",
        f"Landed for {HOUR:%Y-%m-%d %H:00} UTC: {landed.requests:,} requests, "
        f"{landed.deliveries:,} deliveries (duplicates included) in {landed.files:,} files, "
        f"{landed.bytes / 1e6:,.0f} MB of NDJSON. Every round's aggregates and CBF file "
        f"({cbf_row_count} rows) equal the baseline script's rows exactly.",
        "",
        "| measure (median of rounds; peak = highest) | pipeline | baseline | ratio | target |",
        "|---|---|---|---|---|",
        f"| summed step compute time | {compute:.2f} s | {base:.2f} s (the script, writing every output) | "
        f"**{ratio:.2f}** | ≤ {TARGETS['compute_ratio']} × baseline: "
        f"{verdict(ratio <= TARGETS['compute_ratio'])} |",
        f"| the same, against computing without storing | {compute:.2f} s | {base_compute:.2f} s "
        f"(the script, writing nothing) | **{compute / base_compute:.2f}** | – |",
        f"| wall time of the `dagster` CLI process | {wall:.2f} s | "
        f"{statistics.median(b.wall_seconds for b, _ in rounds):.2f} s | – | "
        f"≤ {TARGETS['wall_seconds']:.0f} s: {verdict(wall <= TARGETS['wall_seconds'])} |",
        f"| peak RSS (process tree) | {peak:,.0f} MiB | {base_peak:,.0f} MiB | "
        f"{peak / base_peak:.2f} | ≤ {TARGETS['peak_gib']:.0f} GiB: "
        f"{verdict(peak <= TARGETS['peak_gib'] * 1024)} |",
        "",
        "| round | baseline script s | compute-only script s | pipeline compute s | "
        "run s (Dagster) | CLI wall s | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, ((b, r), c) in enumerate(zip(rounds, compute_only, strict=True), start=1):
        lines.append(
            f"| {number} | {b.seconds:.2f} | {c.seconds:.2f} | {r.compute_seconds:.2f} | "
            f"{r.run_seconds:.2f} | {r.wall_seconds:.2f} | {r.peak_rss_mib:,.0f} |"
        )
    lines += object_storage_lines(rounds, on_s3)
    lines += step_lines([r for _, r in rounds], on_s3)
    lines += machine_section(machine)
    return "\n".join(lines) + "\n"


def step_lines(local: list[RunMeasure], on_s3: list[RunMeasure]) -> list[str]:
    """Compute time per step, medians of rounds (and on S3 beside it, when it ran)."""

    def medians(runs: list[RunMeasure]) -> dict[str, float]:
        return {k: statistics.median(r.step_seconds[k] for r in runs) for k in runs[0].step_seconds}

    steps, total = medians(local), statistics.median(r.compute_seconds for r in local)
    remote = medians(on_s3) if on_s3 else {}
    lines = ["", "Compute time per step (median of rounds):", ""]
    if remote:
        lines += ["| step | s | share | s on S3 | S3 / local |", "|---|---|---|---|---|"]
    else:
        lines += ["| step | s | share |", "|---|---|---|"]
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        row = f"| {key} | {seconds:.2f} | {seconds / total:.0%} |"
        if remote:
            row += f" {remote[key]:.2f} | {remote[key] / seconds:.1f} |"
        lines.append(row)
    return lines


def object_storage_lines(
    rounds: list[tuple[BaselineMeasure, RunMeasure]], on_s3: list[RunMeasure]
) -> list[str]:
    """The same hour on object storage against the local disk, round by round."""
    if not on_s3:
        return []
    local = statistics.median(r.compute_seconds for _, r in rounds)
    remote = statistics.median(r.compute_seconds for r in on_s3)
    local_wall = statistics.median(r.wall_seconds for _, r in rounds)
    remote_wall = statistics.median(r.wall_seconds for r in on_s3)
    ratio = remote / local
    verdict = "met" if ratio <= TARGETS["s3_ratio"] else "**not met**"
    return [
        "",
        "On object storage (the same landing in a bucket of a real S3 API, moto's server on "
        "127.0.0.1; the CBF file checked byte for byte against the local run's):",
        "",
        "| measure (median of rounds) | on S3 | on the local disk | ratio | target |",
        "|---|---|---|---|---|",
        f"| summed step compute time | {remote:.2f} s | {local:.2f} s | **{ratio:.2f}** | "
        f"≤ {TARGETS['s3_ratio']}: {verdict} |",
        f"| CLI wall time | {remote_wall:.2f} s | {local_wall:.2f} s | "
        f"{remote_wall / local_wall:.2f} | – |",
        f"| peak RSS | {max(r.peak_rss_mib for r in on_s3):,.0f} MiB | "
        f"{max(r.peak_rss_mib for _, r in rounds):,.0f} MiB | – | – |",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="unique requests")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--s3",
        action="store_true",
        help="also run the pipeline on object storage (a real S3 API, moto's server on "
        "127.0.0.1, holding a copy of the landing) in each round, and report the ratio",
    )
    add_work_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    with work_dir(options.work_dir, "busy-hour-") as work:
        data_dir = work / "data"
        print(f"landing {options.events:,} requests in {data_dir} ...", file=sys.stderr)
        shutil.rmtree(data_dir / "landing", ignore_errors=True)  # a reused --work-dir too
        landed = land_hour(data_dir, HOUR, options.events, seed=1)
        machine = describe_machine(data_dir, PACKAGES, CODE_UNDER_TEST)
        rounds, cbf_row_count, on_s3, compute_only = [], 0, [], []
        with S3Server() if options.s3 else nullcontext() as s3:
            bucket = bucket_with_landing(s3, data_dir) if s3 else None
            for number in range(1, options.rounds + 1):
                fresh_outputs(data_dir)
                env = pipeline_environment(data_dir, work / f"home-{number}", START_DATE)
                mapping = Path(env["SPEND_ATTRIBUTION_FILE"])
                baseline_out = work / f"baseline-{number}"
                compute_only.append(measure_baseline(data_dir, mapping, None))
                baseline = measure_baseline(data_dir, mapping, baseline_out)
                run = materialize(env, HOUR, HOUR)
                cbf_row_count = verify(data_dir, baseline_out)
                shutil.rmtree(baseline_out)
                rounds.append((baseline, run))
                print(
                    f"round {number}: baseline {baseline.seconds:.2f} s (compute only "
                    f"{compute_only[-1].seconds:.2f} s), pipeline compute "
                    f"{run.compute_seconds:.2f} s, wall {run.wall_seconds:.2f} s, "
                    f"peak {run.peak_rss_mib:,.0f} MiB",
                    file=sys.stderr,
                )
                if bucket is not None:
                    clear_outputs(bucket)
                    s3_env = pipeline_environment(data_dir, work / f"home-s3-{number}", START_DATE)
                    s3_env |= s3.env(direct=True) | {"SPEND_DATA_DIR": bucket.root}
                    on_s3.append(materialize(s3_env, HOUR, HOUR))
                    if (
                        bucket.read(cbf_hour_key(HOUR))
                        != (data_dir / cbf_hour_key(HOUR)).read_bytes()
                    ):
                        raise RuntimeError("the CBF file on S3 differs from the local run's")
                    print(
                        f"round {number} on S3: compute {on_s3[-1].compute_seconds:.2f} s, "
                        f"wall {on_s3[-1].wall_seconds:.2f} s",
                        file=sys.stderr,
                    )
    publish(
        render(
            options,
            shlex.join(sys.orig_argv),
            machine,
            landed,
            rounds,
            cbf_row_count,
            on_s3,
            compute_only,
        ),
        options.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
