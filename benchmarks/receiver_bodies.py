"""The request bodies of the receiver benchmark: pre-serialised ``json_array`` batches of
real-shaped LiteLLM events, copies of the captured LiteLLM 1.106.2 payloads with their own
ids and start times, seeded so every run posts the same bytes."""

from __future__ import annotations

import json
import random
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.samples import LITELLM_FIXTURES

TEMPLATE_FILE = LITELLM_FIXTURES / "generic_api_json_array_batch.json"
BODY_SEED = 20261123  # fixed, so every run posts the same bytes


@dataclass(frozen=True)
class BenchmarkBodies:
    """Pre-serialised ``json_array`` bodies and what the landing zone should hold of them."""

    bodies: list[bytes]
    events_per_body: int
    call_ids: frozenset[str]
    hour: datetime

    @property
    def mean_body_bytes(self) -> float:
        return statistics.fmean(map(len, self.bodies))


def load_templates(path: Path = TEMPLATE_FILE) -> list[dict]:
    """The captured StandardLoggingPayloads the benchmark events are copies of."""
    return json.loads(path.read_text())


def last_full_hour(now: datetime) -> datetime:
    """The UTC hour before the current one: recent, closed, and fixed for the whole run."""
    hour = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(hours=1)


def real_shaped_event(
    template: dict, body_index: int, position: int, hour: datetime, rng: random.Random
) -> dict:
    """A copy of a captured payload with its own ids and a start time inside ``hour``."""
    start = hour.timestamp() + rng.uniform(0, 3590)  # leaves room for the captured duration
    shift = start - template["startTime"]
    event = dict(template)  # only top-level keys change, so a shallow copy is enough
    event["id"] = f"chatcmpl-bench-{body_index:03d}-{position:05d}"
    event["litellm_call_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    for key in ("startTime", "endTime", "completionStartTime"):
        if isinstance(template.get(key), int | float):
            event[key] = template[key] + shift
    return event


def build_bodies(
    templates: Sequence[dict], body_count: int, batch_size: int, hour: datetime
) -> BenchmarkBodies:
    """``body_count`` distinct bodies of ``batch_size`` events, serialised as LiteLLM does."""
    rng = random.Random(BODY_SEED)
    bodies, call_ids = [], set()
    for body_index in range(body_count):
        events = [
            real_shaped_event(templates[i % len(templates)], body_index, i, hour, rng)
            for i in range(batch_size)
        ]
        call_ids.update(e["litellm_call_id"] for e in events)
        # json.dumps' default separators are what LiteLLM's generic_api logger sends.
        bodies.append(json.dumps(events).encode())
    return BenchmarkBodies(bodies, batch_size, frozenset(call_ids), hour)
