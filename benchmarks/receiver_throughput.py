"""Throughput of ``spend-receiver`` against two baselines: a server that reads the body and
answers 200 (body only), and one that also parses it with ``json.loads`` (parse only).

All servers run as separate processes on 127.0.0.1 on the same stack (uvicorn, uvloop,
httptools, no access log), with the same number of worker processes (``--workers``, default
one per core, the receiver's own default). A bounded load generator (one keep-alive
connection per client thread) posts pre-serialised ``json_array`` bodies of real-shaped
LiteLLM events, built from the captured LiteLLM 1.106.2 payloads: a warm-up that is not
measured, then the measured phase of ``--max-requests`` POSTs (200). The servers take turns
for several rounds in one invocation; the report gives each run, the medians, and the ratios.

After every receiver run the landing zone is read back and must hold exactly the events
the receiver acknowledged (fsync is on, the data dir is on the checkout's disk by default).

    .venv/bin/python -m benchmarks.receiver_throughput --s3 --output benchmarks/results/receiver_throughput.md
    .venv/bin/python -m benchmarks.receiver_throughput --rounds 1 --max-requests 40 --warmup-seconds 1
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from benchmarks import REPO_ROOT, progress, publish
from benchmarks.baseline_server import BaselineProcess
from benchmarks.load import KeepAliveClient, PhaseResult, Target, run_phase
from benchmarks.machine import CoresBusy, cores_busy, describe_machine, in_memory, sample_cpu
from benchmarks.receiver_bodies import BenchmarkBodies, build_bodies, last_full_hour, load_templates
from benchmarks.receiver_report import (
    BODY_ONLY,
    LOCAL,
    ON_S3,
    PARSE_ONLY,
    ServerRun,
    commit_summary,
    render_report,
    worker_events,
)
from receiver.app import CALLBACK_PATH
from resources.landing import LandingZone
from tests.receiving import ReceiverProcess
from tests.s3_server import S3Server

JSON_HEADERS = {"Content-Type": "application/json"}
SERVER_STACK = {"server stack": ("uvicorn", "uvloop", "httptools")}
CODE_UNDER_TEST = ("receiver", "resources")


# --- landing verification -------------------------------------------------------------


class LandingMismatch(RuntimeError):
    """The landing zone does not hold what the receiver acknowledged."""


def verify_landing(
    root: Path | str, bodies: BenchmarkBodies, acknowledged: int, unanswered: int
) -> int:
    """The number of landed events, or ``LandingMismatch`` if it is not what was acknowledged."""
    read = LandingZone(root).read_hours([bodies.hour])
    landed = read.table.num_rows
    problems = []
    if landed < acknowledged:
        problems.append(f"only {landed} of {acknowledged} acknowledged events landed")
    # A request cut off after its commit lands unacknowledged events; without one, no excess.
    if landed > acknowledged and unanswered == 0:
        problems.append(f"{landed} events landed but only {acknowledged} were acknowledged")
    if read.torn_bytes or read.malformed:
        problems.append(f"{read.torn_bytes} torn bytes, {len(read.malformed)} malformed lines")
    strangers = set(read.table.column("litellm_call_id").to_pylist()) - bodies.call_ids
    if strangers:
        problems.append(f"{len(strangers)} landed call ids were never sent")
    if problems:
        raise LandingMismatch(f"landing zone {root}: " + "; ".join(problems))
    return landed


# --- the servers' runs ----------------------------------------------------------------


def stopped_cleanly(exit_code: int) -> bool:
    """uvicorn ends a graceful SIGTERM shutdown by re-raising the signal, or with 0."""
    return exit_code in (0, -signal.SIGTERM)


@contextmanager
def _clients(target: Target, concurrency: int) -> Iterator[list[KeepAliveClient]]:
    clients = [KeepAliveClient(target) for _ in range(concurrency)]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def _phase(
    clients: list[KeepAliveClient], bodies: BenchmarkBodies, seconds: float, max_requests: int
) -> PhaseResult:
    return run_phase(clients, bodies.bodies, bodies.events_per_body, seconds, max_requests)


def _measured_phase(
    clients: list[KeepAliveClient],
    server_pid: int,
    bodies: BenchmarkBodies,
    options: argparse.Namespace,
) -> tuple[PhaseResult, CoresBusy]:
    """The measured phase, and how many cores the server (all its processes) and the rest
    kept busy during it."""
    before = sample_cpu(server_pid, with_children=True)
    measured = _phase(clients, bodies, options.seconds, options.max_requests)
    after = sample_cpu(server_pid, with_children=True)
    return measured, cores_busy(before, after, measured.elapsed, measured.client_cpu_seconds)


def run_baseline(
    round_number: int, options: argparse.Namespace, bodies: BenchmarkBodies, parse: bool
) -> ServerRun:
    run_dir = Path(tempfile.mkdtemp(prefix="baseline-", dir=options.work_dir))
    server = BaselineProcess(run_dir / "baseline.log", parse=parse, workers=options.workers)
    try:
        server.start()
        target = Target(server.port, CALLBACK_PATH, JSON_HEADERS, reports_accepted=False)
        with _clients(target, options.concurrency) as clients:
            _phase(clients, bodies, options.warmup_seconds, options.max_requests)
            measured, cores = _measured_phase(clients, server.process.pid, bodies, options)
        if not stopped_cleanly(server.stop()):
            raise RuntimeError(f"{server.name} did not stop cleanly; log: {server.log_path}")
    finally:
        server.kill()
    shutil.rmtree(run_dir)
    return ServerRun(PARSE_ONLY if parse else BODY_ONLY, round_number, measured, cores)


def run_receiver(
    round_number: int,
    options: argparse.Namespace,
    bodies: BenchmarkBodies,
    s3: S3Server | None = None,
) -> ServerRun:
    """The receiver landing on the work dir's disk (fsync on), or in a bucket of ``s3``."""
    run_dir = Path(tempfile.mkdtemp(prefix="receiver-", dir=options.work_dir))
    workers = ("--workers", str(options.workers))
    if s3 is None:
        name, data_dir = LOCAL, run_dir / "data"
        receiver = ReceiverProcess(data_dir, *workers)  # its log goes next to data_dir
    else:
        name, data_dir = ON_S3, s3.create_bucket(f"receiver-{round_number}") + "/data"
        receiver = ReceiverProcess(data_dir, *workers, env=s3.env(direct=True), log_dir=run_dir)
    try:
        receiver.start()
        headers = {**JSON_HEADERS, **receiver.auth}
        target = Target(receiver.port, CALLBACK_PATH, headers, reports_accepted=True)
        with _clients(target, options.concurrency) as clients:
            warmup = _phase(clients, bodies, options.warmup_seconds, options.max_requests)
            before = receiver.metric_samples()
            measured, cores = _measured_phase(clients, receiver.process.pid, bodies, options)
            after = receiver.metric_samples()
        if not stopped_cleanly(receiver.stop()):
            raise RuntimeError(f"spend-receiver did not stop cleanly; log: {receiver.log_path}")
        if warmup.quarantined or measured.quarantined:
            raise LandingMismatch("the receiver quarantined benchmark events: bodies are wrong")
        landed = verify_landing(
            data_dir,
            bodies,
            acknowledged=warmup.events + measured.events,
            unanswered=warmup.unanswered + measured.unanswered,
        )
    except BaseException:
        print(f"receiver data and log kept in {run_dir}", file=sys.stderr)
        raise
    finally:
        receiver.kill()
    if not options.keep_data:
        shutil.rmtree(run_dir)
    commits = commit_summary(before, after)
    per_worker = worker_events(before, after)
    return ServerRun(name, round_number, measured, cores, commits, landed, per_worker)


# --- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Accepted events/s of spend-receiver (fsync on) against baseline servers."
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every server (3)")
    parser.add_argument(
        "--max-requests", type=int, default=200, help="POSTs per phase (200), warm-up too"
    )
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="longest measured phase (120 s)"
    )
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="uncounted (2 s)")
    parser.add_argument("--concurrency", type=int, default=4, help="connections (4)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes of every server (default: one per core, as spend-receiver)",
    )
    parser.add_argument("--batch-size", type=int, default=512, help="events per body (512)")
    parser.add_argument("--bodies", type=int, default=4, help="distinct bodies (4)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO_ROOT / "data" / "benchmarks",
        help="where the landing zones go; must be a real disk for fsync to count "
        "(default data/benchmarks in the checkout)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the landing zones")
    parser.add_argument(
        "--s3",
        action="store_true",
        help="also run the receiver on object storage: a real S3 API (moto's server) on "
        "127.0.0.1, in each round beside the local one",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    options = parser.parse_args(argv)
    for name in ("rounds", "max_requests", "concurrency", "batch_size", "bodies", "workers"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if options.seconds <= 0 or options.warmup_seconds < 0:
        parser.error("--seconds must be positive and --warmup-seconds not negative")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(options.work_dir, SERVER_STACK, CODE_UNDER_TEST)
    if in_memory(options.work_dir):
        progress("WARNING: the work dir is in memory; fsync is not real. Use --work-dir.")
    hour = last_full_hour(datetime.now(timezone.utc))
    bodies = build_bodies(load_templates(), options.bodies, options.batch_size, hour)
    progress(
        f"{len(bodies.bodies)} bodies of {options.batch_size} events, "
        f"{bodies.mean_body_bytes / 1e6:.1f} MB each; events in {hour:%Y-%m-%d %H:00} UTC"
    )
    runs = []
    try:
        with S3Server() if options.s3 else nullcontext() as s3:
            if s3 is not None:  # to read the landing back from the bucket
                os.environ.update(s3.env(direct=True))
            for round_number in range(1, options.rounds + 1):
                servers = [
                    partial(run_baseline, parse=False),
                    partial(run_baseline, parse=True),
                    run_receiver,
                ]
                if s3 is not None:
                    servers.append(partial(run_receiver, s3=s3))
                for run_server in servers:
                    run = run_server(round_number, options, bodies)
                    runs.append(run)
                    progress(
                        f"round {round_number} {run.server}: "
                        f"{run.measured.events_per_second:,.0f} events/s, "
                        f"p50 {run.measured.p50_ms:.1f} ms, p99 {run.measured.p99_ms:.1f} ms, "
                        f"{run.measured.error_count} errors"
                    )
    except LandingMismatch as exc:
        progress(f"FAILED: {exc}")
        return 1
    report = render_report(runs, options, bodies, machine, shlex.join(sys.orig_argv))
    publish(report, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
