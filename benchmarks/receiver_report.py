"""What each run of the receiver benchmark measured, and the Markdown report of all runs."""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.load import PhaseResult
from benchmarks.machine import CoresBusy
from benchmarks.receiver_bodies import BenchmarkBodies

TARGET_EVENTS_PER_SECOND = 40_000
TARGET_S3_RATIO = 0.5  # the receiver on object storage against the one on a local disk
BODY_ONLY, PARSE_ONLY = "body-only baseline", "parse-only baseline"
LOCAL, ON_S3 = "receiver", "receiver on S3"
SERVERS = (BODY_ONLY, PARSE_ONLY, LOCAL, ON_S3)


@dataclass(frozen=True)
class CommitSummary:
    """The receiver's group commits during the measured phase, from ``/metrics``."""

    commits: int
    commit_seconds: float
    events: int
    requests: int

    @property
    def mean_commit_ms(self) -> float:
        return self.commit_seconds / self.commits * 1000 if self.commits else math.nan

    @property
    def events_per_commit(self) -> float:
        return self.events / self.commits if self.commits else math.nan

    @property
    def requests_per_commit(self) -> float:
        return self.requests / self.commits if self.commits else math.nan


_WORKER = re.compile(r',?worker="([^"]*)"')


def _totals(samples: dict[str, float]) -> dict[str, float]:
    """Samples of a ``/metrics`` scrape summed over the ``worker`` label."""
    totals: dict[str, float] = {}
    for name, value in samples.items():
        name = _WORKER.sub("", name).replace("{}", "")
        totals[name] = totals.get(name, 0.0) + value
    return totals


def commit_summary(before: dict[str, float], after: dict[str, float]) -> CommitSummary:
    """What happened between two ``/metrics`` scrapes (every worker's samples in each)."""
    before, after = _totals(before), _totals(after)

    def grown(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return CommitSummary(
        commits=round(grown("spend_receiver_commits_total")),
        commit_seconds=grown("spend_receiver_commit_seconds_sum"),
        events=round(grown("spend_receiver_events_accepted_total")),
        requests=round(grown('spend_receiver_requests_total{code="200"}')),
    )


def worker_events(before: dict[str, float], after: dict[str, float]) -> list[int]:
    """Events each worker accepted between two scrapes, most first."""
    grown: dict[str, float] = {}
    for name, value in after.items():
        if name.startswith("spend_receiver_events_accepted_total{"):
            worker = _WORKER.search(name).group(1)
            grown[worker] = value - before.get(name, 0.0)
    return sorted((round(v) for v in grown.values()), reverse=True)


@dataclass
class ServerRun:
    """One server's measured phase in one round; the receiver's also says what it landed."""

    server: str
    round: int
    measured: PhaseResult
    cores: CoresBusy  # under test: the server; benchmark: the load generator
    commits: CommitSummary | None = None
    landed_events: int | None = None
    worker_events: list[int] | None = None  # accepted in the measured phase, per worker


@dataclass(frozen=True)
class Medians:
    """One server's medians over its rounds (errors are summed: every one matters)."""

    events_per_second: float
    requests_per_second: float
    megabytes_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    @classmethod
    def of(cls, runs: Sequence[ServerRun]) -> Medians:
        def median(values: list[float]) -> float:
            return statistics.median(values) if values else math.nan

        phases = [run.measured for run in runs]
        return cls(
            events_per_second=median([p.events_per_second for p in phases]),
            requests_per_second=median([p.requests_per_second for p in phases]),
            megabytes_per_second=median([p.megabytes_per_second for p in phases]),
            p50_ms=median([p.p50_ms for p in phases]),
            p99_ms=median([p.p99_ms for p in phases]),
            errors=sum(p.error_count for p in phases),
        )


EXPLANATION = """\
Each request is a LiteLLM `generic_api` `json_array` body of {batch} real-shaped events
(copies of the captured LiteLLM 1.106.2 payloads in
`tests/fixtures/litellm/generic_api_json_array_batch.json`, each with its own `id`,
`litellm_call_id` and a `startTime` in {hour}; {bodies} distinct bodies of {body_mb:.1f} MB
on average, {event_kb:.1f} KB an event, serialised before the clock starts). A load generator
in the benchmark process keeps {concurrency} keep-alive connections busy on 127.0.0.1: a
warm-up that is not counted ({warmup:g} s or {max_requests} POSTs), then the measured phase of
{max_requests} POSTs (or {seconds:g} s, whichever ends first). **events/s** is the sum of
`accepted` in the receiver's 200 answers (for a baseline: the events of its 200-answered
requests) over the measured phase; the receiver answers only after the events are written and
fsync'd. **p50** and **p99** are the acknowledgement latency of a POST, from sending it to
reading the answer. Every server runs {workers} worker process(es) (`--workers`, the
receiver's default of one per core) on the same stack (uvicorn, uvloop, httptools, no access
log). The **body-only baseline** reads the whole body and answers 200, so the ratio to it
shows what decoding, projection and the durable write cost on top of moving the bytes; the
**parse-only baseline** also parses the body with the standard library's `json.loads`, the
obvious way to write a receiver, and does nothing with it. The servers take turns for
{rounds} round(s); medians are over rounds. After every receiver run the landing zone is
read back with `LandingZone.read_hours` and must hold exactly the acknowledged events.
*server cores* is the CPU time of the server's processes (its workers included) over the
measured phase, *client cores* that of the load generator, which shares the machine, and
*other cores* whatever else kept the machine busy meanwhile (other processes, kernel work): a
run with much of it was not alone.

To reproduce, run the command at the end from the checkout root (after `make test` or
`make venv` has built `.venv/`) on an otherwise idle machine; `--output FILE` writes this
report, and `--rounds 1 --max-requests 40 --warmup-seconds 1` makes a quick smoke check."""


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _run_row(run: ServerRun) -> str:
    m = run.measured
    cells = [
        run.server,
        str(run.round),
        _fmt(m.events_per_second),
        _fmt(m.requests_per_second, 1),
        _fmt(m.megabytes_per_second, 1),
        _fmt(m.p50_ms, 1),
        _fmt(m.p99_ms, 1),
        str(m.ok_requests),
        str(m.error_count) + (f" ({dict(m.errors)})" if m.errors else ""),
        _fmt(run.cores.under_test, 2),
        _fmt(run.cores.benchmark, 2),
        _fmt(run.cores.rest, 2),
    ]
    return "| " + " | ".join(cells) + " |"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _object_storage_line(medians: dict[str, Medians]) -> list[str]:
    if ON_S3 not in medians:
        return []
    s3_rate, local_rate = medians[ON_S3].events_per_second, medians[LOCAL].events_per_second
    ratio = _ratio(s3_rate, local_rate)
    verdict = "met" if ratio >= TARGET_S3_RATIO else "**missed**"
    return [
        "",
        f"On object storage (a real S3 API, moto's server on 127.0.0.1; one object per commit "
        f"group): **{_fmt(s3_rate)} events/s**, ratio S3/local disk **{_fmt(ratio, 3)}**. "
        f"Target ≥ {TARGET_S3_RATIO}: {verdict}.",
    ]


def _shares(events: list[int] | None) -> str:
    total = sum(events or [])
    if not total:
        return "n/a"
    return " / ".join(f"{100 * e / total:.0f}%" for e in events)


def render_report(
    runs: Sequence[ServerRun],
    options: argparse.Namespace,
    bodies: BenchmarkBodies,
    machine: dict[str, str],
    command: str,
) -> str:
    by_server = {name: [r for r in runs if r.server == name] for name in SERVERS}
    by_server = {name: group for name, group in by_server.items() if group}
    medians = {name: Medians.of(group) for name, group in by_server.items()}
    rate = medians[LOCAL].events_per_second
    body_only = medians[BODY_ONLY].events_per_second
    parse_only = medians[PARSE_ONLY].events_per_second
    verdict = "met" if rate >= TARGET_EVENTS_PER_SECOND else "**missed**"
    lines = [
        "# spend-receiver throughput",
        "",
        f"Receiver with {options.workers} worker(s): **{_fmt(rate)} events/s** (median of "
        f"{len(by_server[LOCAL])}), p50 {_fmt(medians[LOCAL].p50_ms, 1)} ms, p99 "
        f"{_fmt(medians[LOCAL].p99_ms, 1)} ms per POST of {bodies.events_per_body} events. "
        f"Parse-only baseline {_fmt(parse_only)} events/s: receiver/parse-only "
        f"**{_fmt(_ratio(rate, parse_only), 2)}×**. Body-only baseline {_fmt(body_only)} "
        f"events/s: receiver/body-only **{_fmt(_ratio(rate, body_only), 3)}**. "
        f"Target ≥ {TARGET_EVENTS_PER_SECOND:,} events/s: {verdict}.",
        *_object_storage_line(medians),
        "",
        "## Medians over rounds",
        "",
        "| server | events/s | requests/s | MB/s | p50 ms | p99 ms | errors (all rounds) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in medians.items():
        lines.append(
            f"| {name} | {_fmt(m.events_per_second)} | {_fmt(m.requests_per_second, 1)} "
            f"| {_fmt(m.megabytes_per_second, 1)} | {_fmt(m.p50_ms, 1)} | {_fmt(m.p99_ms, 1)} "
            f"| {m.errors} |"
        )
    lines += [
        "",
        "## Every run (measured phase)",
        "",
        "| server | round | events/s | requests/s | MB/s | p50 ms | p99 ms | requests "
        "| errors | server cores | client cores | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_run_row(run) for run in runs),
        "",
        "## Receiver group commits (measured phase, from `/metrics`)",
        "",
        "| landing | round | commits | mean commit ms | events/commit | requests/commit "
        "| events per worker | landed (whole run, verified) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run in [*by_server[LOCAL], *by_server.get(ON_S3, [])]:
        c = run.commits
        lines.append(
            f"| {'S3' if run.server == ON_S3 else 'disk'} | {run.round} | {c.commits} "
            f"| {_fmt(c.mean_commit_ms, 2)} | {_fmt(c.events_per_commit, 0)} "
            f"| {_fmt(c.requests_per_commit, 2)} | {_shares(run.worker_events)} "
            f"| {run.landed_events:,} |"
        )
    explanation = EXPLANATION.format(
        batch=bodies.events_per_body,
        hour=bodies.hour.strftime("%Y-%m-%d %H:00 UTC"),
        bodies=len(bodies.bodies),
        body_mb=bodies.mean_body_bytes / 1e6,
        event_kb=bodies.mean_body_bytes / bodies.events_per_body / 1e3,
        concurrency=options.concurrency,
        warmup=options.warmup_seconds,
        seconds=options.seconds,
        max_requests=options.max_requests,
        workers=options.workers,
        rounds=options.rounds,
    )
    lines += ["", "## What is measured", "", explanation, "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", "## Command", "", "```sh", command, "```", ""]
    return "\n".join(lines)
