"""Requests, bytes and wall time of sending a month of hourly CBF to CloudZero's AnyCost API.

``--hours`` hourly CBF files from 2026-04-01 00:00 UTC (720 = all of April), one row per
resource, are made by ``assets.cbf_rows`` from seeded ``spend_by_agent`` tables (setup, not
measured). Each round sends them all to a fresh in-process ``FakeAnyCost`` on 127.0.0.1
twice: **packed**, the product (``CloudZeroResource.submit``, fresh receipts), then
**baseline**, one request per hour. A run that leaves the fake holding anything but exactly
the files, or gets a non-200 answer or a violation, stops the benchmark without a number.

    .venv/bin/python -m benchmarks.cloudzero_submit --output benchmarks/results/cloudzero_submit.md
    .venv/bin/python -m benchmarks.cloudzero_submit --hours 48 --resources 50 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from assets.cbf_rows import cbf_rows
from benchmarks import progress, publish
from benchmarks.machine import cores_busy, describe_machine, sample_cpu
from resources.cbf import CbfFile, cbf_hour_key, load_cbf_file, write_cbf_csv
from resources.cloudzero import CloudZeroResource
from resources.cloudzero_api import AnyCostTransport
from resources.cloudzero_bodies import dumps, pack_bodies
from resources.cloudzero_report import MONTH_BYTE_LIMIT, MONTH_ROW_LIMIT
from resources.storage import storage_at
from tests.cbf_rows import ledger_differences
from tests.fake_cloudzero import API_KEY, CONNECTION_ID, FakeAnyCost, Fault

MONTH_START = datetime(2026, 4, 1, tzinfo=timezone.utc)
ROW_SEED = 20260401
VARIANTS = ("packed", "baseline")
REQUEST_TIMEOUT_S = 60.0
DEFAULT_LATENCY_MS = 50.0  # a modest internet round trip to api.cloudzero.com
RUN_BUDGET_S = 900.0  # the baseline gives up past this; packed is bounded by timeouts
PACKAGES = {"HTTP client and data": ("httpx", "pyarrow")}
CODE_UNDER_TEST = ("resources", "assets")
# Resources of three dimensions, as a team would configure for spend by agent.
RESOURCE_DIMENSIONS = ("department", "team", "agent")
SPEND_SCHEMA = pa.schema(  # the columns of spend_by_agent that assets.cbf_rows.cbf_rows reads
    [("usage_hour", pa.timestamp("us", tz="UTC"))]
    + [(name, pa.string()) for name in ("department", "team", "agent")]
    + [("cost", pa.decimal128(38, 18)), ("total_tokens", pa.int64()), ("requests", pa.int64())]
)
DEPARTMENTS = ("engineering", "finance", "sales", "support", "marketing", "research", "legal")
TEAMS = ("platform", "payments", "growth", "data", "mobile", "search", "security", "infra")
AGENTS = ("code-review", "triage", "summariser", "sql-helper", "translator", "rag-search")


class RunFailed(RuntimeError):
    """A run sent the wrong data, got a non-200 answer or ran out of time: no number."""


# --- data -------------------------------------------------------------------------------


def month_hours(count: int, start: datetime = MONTH_START) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(count)]


def resource_triples(count: int) -> list[tuple[str, str, str]]:
    """``count`` distinct (department, team, agent), spread over departments and teams."""
    return [(DEPARTMENTS[i % 7], TEAMS[i // 7 % 8], f"{AGENTS[i % 6]}-{i}") for i in range(count)]


def spend_table(hour: datetime, triples: Sequence[tuple[str, ...]], rng: random.Random) -> pa.Table:
    """A ``spend_by_agent``-shaped hour: every resource with tokens, requests and a cost of
    6 to 12 decimals (tokens at $0.10 to $15 per million)."""
    tokens = [rng.randint(200, 400_000) for _ in triples]
    costs = []
    for n in tokens:
        places = rng.randint(6, 12)
        exact = n * rng.uniform(1e-7, 1.5e-5)
        costs.append(Decimal(max(1, round(exact * 10**places))).scaleb(-places))
    tags = [[t[i] for t in triples] for i in range(3)]  # department, team, agent
    requests = [rng.randint(1, 400) for _ in triples]
    values = [[hour] * len(triples), *tags, costs, tokens, requests]
    return pa.Table.from_pydict(dict(zip(SPEND_SCHEMA.names, values, strict=True)), SPEND_SCHEMA)


def generate_files(data_dir: Path, hours: int, resources: int, seed: int) -> dict:
    """Each hour's ``cbf.csv`` under ``data_dir``, written by ``resources.cbf`` and read back."""
    rng, triples, files = random.Random(seed), resource_triples(resources), {}
    storage = storage_at(str(data_dir))
    for hour in month_hours(hours):
        rows = cbf_rows(spend_table(hour, triples, rng), RESOURCE_DIMENSIONS)
        write_cbf_csv(rows, storage, cbf_hour_key(hour))
        files[hour] = load_cbf_file(storage, cbf_hour_key(hour))
    return files


@dataclass(frozen=True)
class MonthTotals:
    rows: int
    csv_bytes: int  # the CBF files on disk, headers included
    json_bytes: int  # the rows as the request bodies carry them, without envelopes


def month_totals(files: Mapping[datetime, CbfFile]) -> dict[str, MonthTotals]:
    totals: dict[str, list[int]] = {}
    for hour, cbf in sorted(files.items()):
        acc = totals.setdefault(f"{hour:%Y-%m}", [0, 0, 0])
        acc[0] += len(cbf.rows)
        acc[1] += Path(cbf.url).stat().st_size  # the benchmark writes to a local folder
        acc[2] += sum(len(dumps(row)) for row in cbf.rows)
    return {month: MonthTotals(*acc) for month, acc in totals.items()}


# --- runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    variant: str
    round: int
    requests: int  # POSTs the fake received
    bytes_sent: int  # their bodies' bytes
    seconds: float
    rows_per_second: float
    hours_per_second: float
    process_cores: float  # this process: client, fake and benchmark together
    other_cores: float  # the rest of the machine meanwhile


def run_problems(
    ledger: Mapping, violations: Sequence, statuses: Sequence, files: Mapping
) -> list[str]:
    """What is wrong with a run, from the fake's ledger, violations and answers; [] if all good."""
    problems = ledger_differences(ledger, files)[:5]
    problems += [f"violation: {v}" for v in violations[:5]]
    if bad := [s for s in statuses if s != 200]:
        problems.append(f"{len(bad)} of {len(statuses)} requests not answered 200: {bad[:5]}")
    return problems


def _measured(
    variant: str, round_number: int, files: Mapping, send: Callable, latency_ms: float
) -> Run:
    with FakeAnyCost() as fake:  # fresh: an empty ledger, the default 5,000,000-byte limit
        # Every request waits latency_ms before it is served: a WAN round trip plus
        # CloudZero's own work, which loopback does not have.
        fake.inject(*[Fault.slow(latency_ms / 1000)] * (2 * len(files) + 10))
        before, started = sample_cpu(os.getpid()), time.perf_counter()
        send(fake)
        seconds = time.perf_counter() - started
        cores = cores_busy(before, sample_cpu(os.getpid()), seconds, benchmark_cpu_seconds=0.0)
        requests = fake.requests
        problems = run_problems(fake.ledger, fake.violations, [r.status for r in requests], files)
    if problems:
        raise RunFailed(f"{variant} round {round_number}: " + "; ".join(problems))
    rows, sent = sum(len(f.rows) for f in files.values()), sum(r.bytes for r in requests)
    rates = per_second(rows, len(files), seconds)
    busy = (cores.under_test, cores.rest)
    return Run(variant, round_number, len(requests), sent, seconds, *rates, *busy)


def per_second(rows: int, hours: int, seconds: float) -> tuple[float, float]:
    return (rows / seconds, hours / seconds) if seconds > 0 else (float("nan"), float("nan"))


def run_packed(round_number: int, files: Mapping, work_dir: Path, latency_ms: float = 0) -> Run:
    data_dir = tempfile.mkdtemp(prefix=f"receipts-{round_number}-", dir=work_dir)

    def send(fake: FakeAnyCost) -> None:
        # Fresh receipts, so every hour is new; one attempt: nothing should fail, fail fast.
        live = {"api_key": API_KEY, "connection_id": CONNECTION_ID, "api_url": fake.url}
        settings = {"data_dir": data_dir, "timeout_seconds": REQUEST_TIMEOUT_S, "max_attempts": 1}
        report = CloudZeroResource(**live, **settings).submit(files, run_id=f"bench-{round_number}")
        if report.error or report.failed_hours or len(report.hours) != len(files):
            raise RunFailed(f"packed round {round_number}: {report.error or 'hours not sent'}")

    return _measured("packed", round_number, files, send, latency_ms)


def run_baseline(round_number: int, files: Mapping, work_dir: Path, latency_ms: float = 0) -> Run:
    def send(fake: FakeAnyCost) -> None:
        deadline = time.monotonic() + RUN_BUDGET_S
        transport = AnyCostTransport(fake.billing_drops_url, API_KEY, REQUEST_TIMEOUT_S)
        try:
            for hour, cbf in sorted(files.items()):
                if time.monotonic() > deadline:
                    raise RunFailed(f"baseline round {round_number}: over {RUN_BUDGET_S:g} s")
                for body in pack_bodies({hour: cbf.rows}):
                    if (answer := transport(body)).status != 200:
                        raise RunFailed(f"baseline: HTTP {answer.status} {answer.message}")
        finally:
            transport.close()

    return _measured("baseline", round_number, files, send, latency_ms)


# --- summary and report -----------------------------------------------------------------

FIELDS = ("requests", "bytes_sent", "seconds", "rows_per_second", "hours_per_second")


def medians(runs: Sequence[Run], variant: str) -> dict[str, float]:
    mine = [r for r in runs if r.variant == variant]
    return {f: statistics.median(getattr(r, f) for r in mine) for f in FIELDS}


def ratios(packed: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """packed/baseline of every median: below 1 means fewer requests, less time, fewer rows/s."""
    return {f: packed[f] / baseline[f] for f in FIELDS}


def break_even_ms(packed: Mapping[str, float], baseline: Mapping[str, float]) -> float:
    """Latency a real request would add, over loopback's, for both variants to take as long;
    negative when packed is already faster here."""
    saved = baseline["requests"] - packed["requests"]
    return (packed["seconds"] - baseline["seconds"]) / saved * 1000 if saved else float("nan")


def limit_verdict(value: int, limit: int) -> str:
    share = f"{value / limit:.0%} of the limit"
    return f"**exceeds** it ({share})" if value > limit else f"within it ({share})"


def month_finding(month: str, totals: MonthTotals) -> str:
    """The month's rows and bytes against the per-month limits, in plain words."""
    sizes = {"the rows as JSON, as sent": totals.json_bytes, "the CBF CSV files": totals.csv_bytes}
    over = [name for name, n in sizes.items() if n > MONTH_BYTE_LIMIT]
    verdict = f"**exceeds 70 MB** counted as {' or '.join(over)}" if over else "stays within 70 MB"
    parts = [
        f"{name}: {n:,} bytes, {limit_verdict(n, MONTH_BYTE_LIMIT)}" for name, n in sizes.items()
    ]
    rows = f"{totals.rows:,} rows, {limit_verdict(totals.rows, MONTH_ROW_LIMIT)}"
    return f"{month}: {rows}; {'; '.join(parts)}. At this scale the month {verdict}."


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _cells(m: Mapping[str, float], ratio: bool = False) -> str:
    specs = (".3f",) * 5 if ratio else (",.0f", ",.0f", ".2f", ",.0f", ",.1f")
    return " | ".join(format(m[f], spec) for f, spec in zip(FIELDS, specs, strict=True))


def render_report(
    runs: Sequence[Run], setup: dict, options: argparse.Namespace, machine: Mapping, command: str
) -> str:
    p, b = (medians(runs, v) for v in VARIANTS)
    ratio, months, even = ratios(p, b), setup["months"], break_even_ms(p, b)
    lines = [
        "# Sending a month of hourly CBF to CloudZero AnyCost Stream\n",
        f"Packed (`CloudZeroResource.submit`): **{p['requests']:,.0f} requests**, "
        f"{_mb(p['bytes_sent'])}, **{p['seconds']:.2f} s**; one request per hour: "
        f"{b['requests']:,.0f} requests, {_mb(b['bytes_sent'])}, {b['seconds']:.2f} s. Ratio "
        f"packed/baseline: wall time **{ratio['seconds']:.2f}**, requests "
        f"**{ratio['requests']:.3f}**. "
        + (
            f"Every request waited {options.latency_ms:g} ms, as a WAN round trip would. "
            if options.latency_ms
            else "No latency added: loopback only. "
        )
        + f"{setup['rows']:,} rows; medians of {options.rounds}; "
        "every run verified against the fake's ledger.",
        (
            f"The baseline's requests cost {b['seconds'] / b['requests'] * 1000:.1f} ms each "
            f"here, so packing saves less time than its own work costs: packed is faster once "
            f"a real request takes more than **{even:.1f} ms** longer than here."
            if even > 0
            else f"Packing saves {b['seconds'] - p['seconds']:.2f} s of the baseline's "
            f"{b['seconds']:.2f} s here; each further millisecond a real request takes costs "
            f"the baseline {b['requests'] - p['requests']:,.0f} ms more than packed."
        )
        + "\n",
        "## Medians over rounds\n",
        "| variant | requests | bytes sent | seconds | rows/s | hours/s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| packed | {_cells(p)} |",
        f"| baseline | {_cells(b)} |",
        f"| ratio packed/baseline | {_cells(ratio, ratio=True)} |",
        "\n## Every run\n",
        "| variant | round | requests | bytes sent | seconds | rows/s | hours/s | ledger "
        "| process cores | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        *(
            f"| {r.variant} | {r.round} | {_cells(vars(r))} | verified "
            f"| {r.process_cores:.2f} | {r.other_cores:.2f} |"
            for r in runs
        ),
        "\n## The month against CloudZero's per-month limits\n",
        f"Limits as the issue quotes them: ≤ {MONTH_ROW_LIMIT:,} rows and 70 MB per month.\n",
        *(f"- {month_finding(month, t)}" for month, t in months.items()),
        "\n## Setup (not measured)\n",
        f"- {options.hours:,} hours from {MONTH_START:%Y-%m-%d %H:00} UTC × {options.resources:,} "
        f"resources = {setup['rows']:,} CBF rows in {options.hours:,} `cbf.csv` files, "
        f"{setup['csv_bytes']:,} bytes on disk (seed {options.seed})",
        "- made from seeded `spend_by_agent` tables by `assets.cbf_rows.cbf_rows`, written with "
        f"`write_cbf_csv` and read back with `load_cbf_file` in {setup['seconds']:.1f} s",
        "\n## What is measured\n",
        WHAT_IS_MEASURED.format(rounds=options.rounds),
        "\n## Machine\n",
        *(f"- {label}: {value}" for label, value in machine.items()),
        f"\n## Command\n\n```sh\n{command}\n```\n",
    ]
    return "\n".join(lines)


WHAT_IS_MEASURED = """\
Every run sends all files to a fresh `tests.fake_cloudzero.FakeAnyCost` (5,000,000-byte body
limit) that runs **in this process, on 127.0.0.1**, in a server thread: its JSON parsing,
validation and ledger share the benchmark's interpreter and GIL, so both wall times include
the fake's own work, and no real network is crossed; instead the fake waits `--latency-ms`
before serving each request. **packed** is `CloudZeroResource.submit`
in live mode with a fresh receipts dir: it plans every hour, packs whole hours into
`replace_hourly` bodies of up to 4,750,000 bytes, posts them one at a time over one
keep-alive connection and writes one receipt per hour. **baseline** is a naive exporter: for
each hour, `pack_bodies({{hour: rows}})` and one POST per body through one `AnyCostTransport`
(the same client), no receipts. *seconds* is the wall time (`time.perf_counter`) of the
whole submission; *requests* and *bytes sent* are the POSTs and body bytes the fake received.
After each run the fake must hold exactly the files' rows (`tests.cbf_rows.ledger_differences`),
every request must have been answered 200, and no concurrency or idempotency-key violation
recorded. Variants alternate packed, baseline in each of {rounds} round(s); medians over rounds.
*process cores* is this process's CPU time over the run (client, fake and benchmark), *other
cores* the rest of the machine meanwhile: a run with much of it was not alone."""


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A month of hourly CBF sent to a fake CloudZero.")
    parser.add_argument("--hours", type=int, default=720, help="hours from 2026-04-01 (720)")
    parser.add_argument("--resources", type=int, default=300, help="rows per hour (300)")
    parser.add_argument("--rounds", type=int, default=3, help="packed+baseline rounds (3)")
    parser.add_argument("--seed", type=int, default=ROW_SEED, help=f"data seed ({ROW_SEED})")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=DEFAULT_LATENCY_MS,
        help=f"added to every request, as a WAN round trip would ({DEFAULT_LATENCY_MS:g})",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    options = parser.parse_args(argv)
    if not 0 <= options.latency_ms <= 10_000:
        parser.error("--latency-ms must be between 0 and 10000")
    for name in ("hours", "resources", "rounds"):
        if not 1 <= getattr(options, name) <= 100_000:
            parser.error(f"--{name} must be between 1 and 100000")
    return options


def run_benchmark(options: argparse.Namespace, command: str) -> tuple[str, list[Run]]:
    with tempfile.TemporaryDirectory(prefix="cloudzero-submit-") as tmp:
        work_dir = Path(tmp)  # data/ is the run's SPEND_DATA_DIR; receipts go next to it
        machine = describe_machine(work_dir, PACKAGES, CODE_UNDER_TEST)
        started = time.perf_counter()
        files = generate_files(work_dir / "data", options.hours, options.resources, options.seed)
        seconds, months = time.perf_counter() - started, month_totals(files)
        rows, csv_bytes = (
            sum(t.rows for t in months.values()),
            sum(f.csv_bytes for f in months.values()),
        )
        setup = {"rows": rows, "csv_bytes": csv_bytes, "seconds": seconds, "months": months}
        progress(f"{rows:,} rows in {len(files)} files, {_mb(csv_bytes)}, made in {seconds:.1f} s")
        runs: list[Run] = []
        for n in range(1, options.rounds + 1):
            for run_variant in (run_packed, run_baseline):  # alternating, packed first
                runs.append(run := run_variant(n, files, work_dir, options.latency_ms))
                progress(f"round {n} {run.variant}: {run.requests} requests, {run.seconds:.2f} s")
    return render_report(runs, setup, options, machine, command), runs


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        report, _ = run_benchmark(options, shlex.join(sys.orig_argv))
    except RunFailed as exc:
        progress(f"FAILED: {exc}")
        return 1
    publish(report, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
