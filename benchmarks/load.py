"""A bounded load generator on 127.0.0.1: keep-alive clients posting pre-serialised bodies.

Every client is a worker thread with one persistent connection that posts its next body as
soon as the last one is answered, so the server sets the pace. A phase ends after a number
of seconds or of requests, whichever comes first, and reports what the clients saw.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

REQUEST_TIMEOUT_SECONDS = 60.0


def percentile(values: Sequence[float], percent: float) -> float:
    """The ``percent``-th percentile, interpolating between the closest ranks; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = percent / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class PhaseResult:
    """What the load generator saw during one phase (all clients together)."""

    elapsed: float = 0.0
    ok_requests: int = 0
    events: int = 0  # accepted by the server, or sent in a 200-answered request (see Target)
    quarantined: int = 0
    bytes_sent: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, 200-answered requests
    errors: Counter[str] = field(default_factory=Counter)  # by status code or exception
    unanswered: int = 0  # transport failures: the server may have landed these all the same
    client_cpu_seconds: float = 0.0  # of the whole benchmark process

    def add(self, other: PhaseResult) -> None:
        self.ok_requests += other.ok_requests
        self.events += other.events
        self.quarantined += other.quarantined
        self.bytes_sent += other.bytes_sent
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.unanswered += other.unanswered

    def _per_second(self, amount: float) -> float:
        return amount / self.elapsed if self.elapsed else math.nan

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def events_per_second(self) -> float:
        return self._per_second(self.events)

    @property
    def requests_per_second(self) -> float:
        return self._per_second(self.ok_requests)

    @property
    def megabytes_per_second(self) -> float:
        return self._per_second(self.bytes_sent / 1e6)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


@dataclass(frozen=True)
class Target:
    """Where the load goes and how an answer says how many events were taken."""

    port: int
    path: str
    headers: dict[str, str]
    # True: a 200 answer is {"accepted": n, "quarantined": m}, as the receiver's is.
    # False: a 200 answer took every event of its body.
    reports_accepted: bool


class RequestBudget:
    """Hands out request numbers until ``limit`` are out or ``deadline`` has passed."""

    def __init__(self, limit: int, deadline: float) -> None:
        self.limit = limit
        self.deadline = deadline
        self._issued = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._issued >= self.limit or time.perf_counter() >= self.deadline:
                return None
            self._issued += 1
            return self._issued - 1


class KeepAliveClient:
    """One persistent HTTP/1.1 connection, reopened only after a transport error."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, bytes]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                "127.0.0.1", self.target.port, timeout=REQUEST_TIMEOUT_SECONDS
            )
        self._connection.request("POST", self.target.path, body=body, headers=self.target.headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _post_until_budget_spent(
    client: KeepAliveClient,
    budget: RequestBudget,
    bodies: Sequence[bytes],
    events_per_body: int,
    tally: PhaseResult,
) -> None:
    while (ticket := budget.take()) is not None:
        body = bodies[ticket % len(bodies)]
        sent_at = time.perf_counter()
        try:
            status, answer = client.post(body)
        except (OSError, http.client.HTTPException) as exc:
            tally.errors[type(exc).__name__] += 1
            tally.unanswered += 1
            client.close()
            continue
        latency = time.perf_counter() - sent_at
        if status != 200:
            tally.errors[f"HTTP {status}"] += 1
            continue
        if client.target.reports_accepted:
            try:
                counts = json.loads(answer)
                accepted, quarantined = int(counts["accepted"]), int(counts["quarantined"])
            except (ValueError, KeyError, TypeError):
                tally.errors["unreadable 200 answer"] += 1
                continue
        else:
            accepted, quarantined = events_per_body, 0
        tally.ok_requests += 1
        tally.bytes_sent += len(body)
        tally.latencies.append(latency)
        tally.events += accepted
        tally.quarantined += quarantined


def run_phase(
    clients: Sequence[KeepAliveClient],
    bodies: Sequence[bytes],
    events_per_body: int,
    seconds: float,
    max_requests: int,
) -> PhaseResult:
    """Post ``bodies`` in turn from every client at once until ``seconds`` pass or
    ``max_requests`` are sent; each body holds ``events_per_body`` events."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    budget = RequestBudget(max_requests, started + seconds)
    tallies = [PhaseResult() for _ in clients]
    threads = [
        threading.Thread(
            target=_post_until_budget_spent,
            args=(client, budget, bodies, events_per_body, tally),
            daemon=True,
        )
        for client, tally in zip(clients, tallies, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:  # the last request may start just before the deadline
        thread.join(timeout=seconds + REQUEST_TIMEOUT_SECONDS + 5)
        if thread.is_alive():
            raise RuntimeError("a load-generator worker did not finish in time")
    result = PhaseResult(elapsed=time.perf_counter() - started)
    result.client_cpu_seconds = time.process_time() - cpu_started
    for tally in tallies:
        result.add(tally)
    return result
