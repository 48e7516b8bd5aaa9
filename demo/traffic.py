"""Deterministic sample LiteLLM traffic: webhook batches plus the answer key.

The demo and the end-to-end tests need spend data that looks like what a LiteLLM proxy's
``generic_api`` callback really POSTs (``demo.payloads``) *and* need to know the right answer
for it. So the generator builds both from one seeded ``random.Random``:

* ``Traffic.batches``: ``(received_at, payloads)`` in delivery order, including the awkward
  cases the pipeline must survive: failures, duplicate deliveries (webhook retries, double
  logs) and late events (delivered in a batch of a later hour);
* ``Traffic.requests``: one ``ExpectedRequest`` per unique request, with its usage hour,
  exact cost, tokens and the department/team/agent the pipeline must attribute it to
  (callers and their attribution channels: ``demo.population``).

``land_traffic`` writes the batches through the landing zone, as the receiver would have.
Nothing here reads the clock: the same arguments give the same traffic, byte for byte.
"""

from __future__ import annotations

import copy
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from demo.payloads import FAILURES, build_payload
from demo.population import CHANNELS, MODELS, Caller, expected_attribution, pick_caller
from resources.landing import LandingZone, WriteResult
from resources.litellm_usage import cache_token_counts

HOUR = timedelta(hours=1)

# Shares of the traffic. Failures, duplicates and late events are independent of the channel.
FAILURE_RATE = 0.03
DUPLICATE_RATE = 0.02
LATE_RATE = 0.01
MAX_LATE_HOURS = 3  # a late event arrives 1..3 hours after its own hour (within the range)
DUPLICATE_SPREAD = 8  # a duplicate arrives in the same batch or one of the next few
BATCH_SIZES = (5, 50)  # LiteLLM flushes when its queue is full or on a timer
FLUSH_DELAY = (0.05, 5.0)  # seconds between the last event of a batch and its POST
# Events start early enough that they end, and their batch arrives, inside their own hour.
LATEST_START_OFFSET = 3600 - 120


@dataclass(frozen=True)
class ExpectedRequest:
    """What the pipeline must make of one unique request (however often it was delivered)."""

    request_key: str  # litellm_call_id
    hour: datetime  # UTC hour of startTime
    model: str
    provider: str
    cost: Decimal  # Decimal(repr(response_cost))
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    failed: bool
    department: str
    team: str
    agent: str
    attribution_source: str
    channel: str  # the generator's intent, one of CHANNELS
    deliveries: int = 1
    late: bool = False  # first (only) delivery in a batch of a later hour
    error_class: str | None = None
    cache_hit: bool | None = None  # LiteLLM's response cache answered
    cache_read_tokens: int | None = None  # prompt tokens the provider's cache served


@dataclass
class Traffic:
    """Webhook batches in delivery order and the answer key for them."""

    start: datetime
    hour_count: int
    batches: list[tuple[float, list[dict[str, Any]]]]
    requests: list[ExpectedRequest]

    @property
    def hours(self) -> list[datetime]:
        return [self.start + i * HOUR for i in range(self.hour_count)]

    @property
    def total_cost(self) -> Decimal:
        return sum((r.cost for r in self.requests), Decimal(0))

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.requests)

    @property
    def deliveries(self) -> int:
        return sum(len(payloads) for _, payloads in self.batches)

    @property
    def duplicates(self) -> int:
        return self.deliveries - len(self.requests)

    @property
    def late_events(self) -> int:
        return sum(r.late for r in self.requests)

    @property
    def failures(self) -> int:
        return sum(r.failed for r in self.requests)

    def payloads(self) -> Iterator[dict[str, Any]]:
        """Every delivered payload, duplicates included, in delivery order."""
        for _, payloads in self.batches:
            yield from payloads

    def count_by(self, name: str) -> Counter[str]:
        """Unique requests per value of an ``ExpectedRequest`` field, e.g. ``channel``."""
        return Counter(getattr(r, name) for r in self.requests)

    def cost_by(self, *names: str) -> dict[tuple[Any, ...], Decimal]:
        """Exact cost per ``(hour, *field values)``, e.g. ``cost_by("department")``."""
        totals: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
        for r in self.requests:
            totals[(r.hour, *(getattr(r, n) for n in names))] += r.cost
        return dict(totals)


@dataclass
class _Batch:
    received_at: float
    hour_index: int
    payloads: list[dict[str, Any]]


def _batch_hour(rng: random.Random, hour_index: int, payloads: list[dict]) -> list[_Batch]:
    """Cut one hour's on-time events (sorted by endTime) into POSTs, arriving in order."""
    batches: list[_Batch] = []
    i, last = 0, 0.0
    while i < len(payloads):
        chunk = payloads[i : i + rng.randint(*BATCH_SIZES)]
        received = round(max(p["endTime"] for p in chunk) + rng.uniform(*FLUSH_DELAY), 6)
        last = max(received, round(last + 0.001, 6))
        batches.append(_Batch(last, hour_index, chunk))
        i += len(chunk)
    return batches


def _place_late(
    rng: random.Random, batches: list[_Batch], late: list[tuple[int, dict]], start: datetime
) -> None:
    """Add each late event to a batch 1..MAX_LATE_HOURS hours after its own hour."""
    for hour_index, payload in late:
        targets = [b for b in batches if hour_index < b.hour_index <= hour_index + MAX_LATE_HOURS]
        if targets:
            rng.choice(targets).payloads.append(payload)
        else:  # that later hour had no on-time events: the late event is a POST of its own
            at = (start + (hour_index + 1) * HOUR).timestamp() + rng.uniform(1.0, 60.0)
            batches.append(_Batch(round(at, 6), hour_index + 1, [payload]))
    batches.sort(key=lambda b: b.received_at)


def _place_duplicates(rng: random.Random, batches: list[_Batch], call_ids: set[str]) -> None:
    """Deliver each chosen payload once more, identical, in its batch or one shortly after."""
    originals = [
        (index, payload)
        for index, batch in enumerate(batches)
        for payload in batch.payloads
        if payload["litellm_call_id"] in call_ids
    ]
    for index, payload in originals:
        target = rng.choice(batches[index : index + DUPLICATE_SPREAD])
        target.payloads.append(copy.deepcopy(payload))


def _utc_hour(start: datetime) -> datetime:
    if start.tzinfo is None:
        raise ValueError(f"start must be timezone-aware (UTC), got naive {start}")
    return start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def generate_traffic(
    start: datetime, hours: int, events_per_hour: int = 200, seed: int = 7
) -> Traffic:
    """Sample traffic for ``hours`` UTC hours from ``start`` (floored to its hour).

    Every event starts, ends and is delivered inside ``[start, start + hours)``.
    """
    if hours < 1 or events_per_hour < 0:
        raise ValueError(f"need hours >= 1, events_per_hour >= 0: {hours}, {events_per_hour}")
    start = _utc_hour(start)
    rng = random.Random(seed)
    channels, weights = list(CHANNELS), list(CHANNELS.values())
    batches: list[_Batch] = []
    late: list[tuple[int, dict]] = []
    duplicated: set[str] = set()
    requests: list[ExpectedRequest] = []
    for hour_index in range(hours):
        hour = start + hour_index * HOUR
        on_time: list[dict] = []
        for _ in range(events_per_hour):
            caller = pick_caller(rng, rng.choices(channels, weights)[0])
            model = MODELS[rng.choice(caller.models)]
            failure = rng.choice(FAILURES) if rng.random() < FAILURE_RATE else None
            began = round(hour.timestamp() + rng.uniform(0, LATEST_START_OFFSET), 6)
            payload = build_payload(rng, began, caller, model, failure)
            is_late = hour_index < hours - 1 and rng.random() < LATE_RATE
            is_duplicate = not is_late and rng.random() < DUPLICATE_RATE
            if is_late:
                late.append((hour_index, payload))
            else:
                on_time.append(payload)
            if is_duplicate:
                duplicated.add(payload["litellm_call_id"])
            requests.append(_expected(payload, hour, caller, is_late, is_duplicate))
        on_time.sort(key=lambda p: p["endTime"])
        batches.extend(_batch_hour(rng, hour_index, on_time))
    _place_late(rng, batches, late, start)
    _place_duplicates(rng, batches, duplicated)
    return Traffic(
        start=start,
        hour_count=hours,
        batches=[(b.received_at, b.payloads) for b in batches],
        requests=requests,
    )


def _expected(
    payload: dict, hour: datetime, caller: Caller, late: bool, duplicate: bool
) -> ExpectedRequest:
    who = expected_attribution(
        payload["metadata"]["requester_custom_headers"],
        payload["request_tags"],
        caller.key_alias,
        caller.team_alias,
    )
    return ExpectedRequest(
        request_key=payload["litellm_call_id"],
        hour=hour,
        model=payload["model"],
        provider=payload["custom_llm_provider"],
        cost=Decimal(repr(payload["response_cost"])),
        prompt_tokens=payload["prompt_tokens"],
        completion_tokens=payload["completion_tokens"],
        total_tokens=payload["total_tokens"],
        failed=payload["status"] == "failure",
        department=who.department,
        team=who.team,
        agent=who.agent,
        attribution_source=who.source,
        channel=caller.channel,
        deliveries=2 if duplicate else 1,
        late=late,
        error_class=(payload.get("error_information") or {}).get("error_class") or None,
        cache_hit=payload.get("cache_hit"),
        cache_read_tokens=cache_token_counts(payload["metadata"].get("usage_object"))[0],
    )


def land_traffic(traffic: Traffic, data_dir: str | Path, writer_id: str = "sample") -> WriteResult:
    """Write every batch through the landing zone, as the receiver would have."""
    zone = LandingZone(data_dir, writer_id)
    total = WriteResult()
    for received_at, payloads in traffic.batches:
        result = zone.write_events(payloads, received_at=received_at)
        total.landed += result.landed
        total.quarantined += result.quarantined
        total.files.extend(result.files)
    return total
