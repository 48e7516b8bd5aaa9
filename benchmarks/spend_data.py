"""Real-shaped webhook landings for the pipeline benchmarks.

``land_hour`` generates sample LiteLLM traffic (``demo.traffic``: full ``generic_api``
payloads with content, secrets, failures and duplicate deliveries) in chunks and lands it
through ``LandingZone.write_events`` in batches of ``BATCH_EVENTS``, one file per batch, as
the receiver does for a proxy that flushes 512 events at a time. Memory stays bounded by
one chunk whatever the hour's size.

``land_month`` lands a few distinct days that way and fills the other days of the range
with copies of them shifted by whole days, every id suffixed with the day, written line
by line with the landed fields unchanged otherwise. Generating 7.2 million full payloads
would take about 16 minutes; one generated day plus the copies take about 3, and every
landed hour is still made of real-shaped lines with unique ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from demo.traffic import generate_traffic
from resources.lake import hive_prefix
from resources.landing import LANDING_FOLDER, LandingZone

BATCH_EVENTS = 512
CHUNK_EVENTS = 10_240
WRITER_ID = "bench"
_ID_FIELDS = ("request_id", "litellm_call_id")
_TIME_FIELDS = ("start_time", "end_time", "received_at")


@dataclass
class Landed:
    """What was landed: deliveries (duplicates included), unique requests and files."""

    deliveries: int = 0
    requests: int = 0
    files: int = 0
    bytes: int = 0

    def add(self, other: Landed) -> None:
        self.deliveries += other.deliveries
        self.requests += other.requests
        self.files += other.files
        self.bytes += other.bytes


def _batches(payloads: list, received_at: float) -> Iterator[tuple[float, list]]:
    for start in range(0, len(payloads), BATCH_EVENTS):
        yield received_at, payloads[start : start + BATCH_EVENTS]


def land_hour(data_dir: Path, hour: datetime, requests: int, seed: int) -> Landed:
    """``requests`` unique requests started in ``hour`` (plus their duplicate deliveries)."""
    zone = LandingZone(data_dir, WRITER_ID)
    landed = Landed()
    chunk = 0
    while landed.requests < requests:
        size = min(CHUNK_EVENTS, requests - landed.requests)
        traffic = generate_traffic(hour, 1, events_per_hour=size, seed=seed * 100_003 + chunk)
        payloads = list(traffic.payloads())
        received_at = traffic.batches[-1][0]
        for at, batch in _batches(payloads, received_at):
            result = zone.write_events(batch, received_at=at)
            if result.quarantined:
                raise RuntimeError(f"sample traffic was quarantined: {result.quarantined} events")
            landed.add(Landed(result.landed, 0, len(result.files), result.bytes))
        landed.requests += len(traffic.requests)
        chunk += 1
    return landed


def _shifted_line(line: bytes, seconds: float, suffix: str) -> bytes:
    record = msgspec.json.decode(line)
    for name in _TIME_FIELDS:
        if record.get(name) is not None:
            record[name] += seconds
    for name in _ID_FIELDS:
        if record.get(name):
            record[name] += suffix
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def copy_hour_shifted(zone: LandingZone, source: datetime, days: int) -> Landed:
    """Copy ``source``'s landed files ``days`` later, ids suffixed ``-d<days>``."""
    target = source + timedelta(days=days)
    folder = hive_prefix(LANDING_FOLDER, target)
    landed = Landed()
    for entry in zone.hour_entries([source])[0]:
        lines = [
            _shifted_line(line, days * 86_400.0, f"-d{days}")
            for line in zone.storage.read(entry.key).splitlines()
            if line
        ]
        data = b"".join(lines)
        zone.storage.write(f"{folder}/{entry.key.rsplit('/', 1)[-1]}", data)
        landed.add(Landed(len(lines), 0, 1, len(data)))
    return landed


def land_month(
    data_dir: Path, first: datetime, hours: int, requests_per_hour: int, distinct_days: int = 1
) -> Landed:
    """``hours`` hours from ``first``: ``distinct_days`` generated, the rest shifted copies."""
    zone = LandingZone(data_dir, WRITER_ID)
    landed = Landed()
    generated = min(hours, distinct_days * 24)
    for index in range(generated):
        landed.add(land_hour(data_dir, first + timedelta(hours=index), requests_per_hour, index))
    unique_per_hour = landed.requests / generated
    for index in range(generated, hours):
        source = first + timedelta(hours=index % generated)
        days = (index - index % generated) // 24
        copied = copy_hour_shifted(zone, source, days)
        copied.requests = round(unique_per_hour)
        landed.add(copied)
    return landed
