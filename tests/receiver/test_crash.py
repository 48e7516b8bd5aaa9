"""``kill -9`` during load: every acknowledged event is landed and every file reads whole,
with one receiver process and with two workers (every process of the receiver killed)."""

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from resources.landing import LandingZone
from tests.receiving import ReceiverProcess
from tests.samples import numbered_payloads

ROUNDS = 5
WORKERS = 4
EVENTS_PER_POST = 64
MAX_POSTS_PER_WORKER = 400
MAX_LOAD_SECONDS = 20.0
FIRST_HOUR = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
HOURS = [FIRST_HOUR + timedelta(hours=n) for n in range(3)]  # a batch spans hours


@dataclass
class Load:
    acknowledged: set[str] = field(default_factory=set)
    sent_posts: int = 0
    failed_posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def batch(worker: int, post: int, round_: int) -> list[dict]:
    return numbered_payloads(
        f"crash-{round_}-{worker}-{post}",
        EVENTS_PER_POST,
        lambda n: HOURS[n % len(HOURS)].timestamp() + n,
        seconds=1.5,
    )


def drive(url: str, auth: dict, worker: int, round_: int, load: Load, stop: threading.Event):
    deadline = time.monotonic() + MAX_LOAD_SECONDS
    with httpx.Client(headers=auth, timeout=10) as client:
        for post in range(MAX_POSTS_PER_WORKER):
            if stop.is_set() or time.monotonic() > deadline:
                return
            events = batch(worker, post, round_)
            try:
                response = client.post(url, json=events)
            except httpx.TransportError:
                with load.lock:
                    load.failed_posts += 1
                return  # the receiver is gone
            with load.lock:
                load.sent_posts += 1
                if response.status_code == 200:
                    load.acknowledged.update(e["id"] for e in events)


def crash_once(data_dir, round_: int, rng: random.Random, processes: str) -> Load:
    load, stop = Load(), threading.Event()
    with ReceiverProcess(data_dir, "--workers", processes) as receiver:
        workers = [
            threading.Thread(
                target=drive, args=(receiver.callback_url, receiver.auth, w, round_, load, stop)
            )
            for w in range(WORKERS)
        ]
        for worker in workers:
            worker.start()
        time.sleep(rng.uniform(0.3, 1.5))  # a different instant of the write path each round
        receiver.kill()
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    return load


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "two-workers"])
def crashes(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("crash") / "data"
    rng = random.Random(20261123)
    loads = [crash_once(data_dir, round_, rng, request.param) for round_ in range(ROUNDS)]
    return data_dir, loads


def test_every_round_was_killed_mid_load(crashes):
    _, loads = crashes
    for load in loads:
        assert load.acknowledged, "the load never got an answer before the kill"
        assert load.failed_posts >= 1, "the kill did not interrupt the load"


def test_every_acknowledged_event_is_landed_and_readable(crashes):
    data_dir, loads = crashes
    read = LandingZone(data_dir).read_hours(HOURS)
    assert read.malformed == [], read.malformed
    assert read.torn_bytes == 0
    landed = set(read.table.column("request_id").to_pylist())
    for round_, load in enumerate(loads):
        lost = load.acknowledged - landed
        assert not lost, f"round {round_}: {len(lost)} acknowledged events lost"


def test_files_are_published_whole(crashes):
    data_dir, _ = crashes
    landing = data_dir / "landing" / "litellm_webhook"
    published = list(landing.rglob("*.ndjson"))
    assert published
    for path in published:
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path} ends mid-line"
