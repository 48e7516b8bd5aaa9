"""``spend-receiver --workers N``: N processes on one port, each landing with its own writer;
SIGTERM drains them all; ``--workers 1`` is the single process the receiver always was."""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import pytest

from receiver.cli import parse_args
from resources.landing import LandingZone
from tests.receiving import ReceiverProcess
from tests.samples import numbered_payloads

HOUR = datetime(2026, 4, 2, 9, tzinfo=timezone.utc)
EVENTS_PER_POST = 32


@dataclass
class Load:
    acknowledged: set[str] = field(default_factory=set)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def events(tag: str, post: int) -> list[dict]:
    return numbered_payloads(f"{tag}-{post}", EVENTS_PER_POST, lambda n: HOUR.timestamp() + n)


def drive(receiver: ReceiverProcess, tag: str, load: Load, stop: threading.Event) -> None:
    """Post until told to stop or the receiver is gone, a new connection per POST (LiteLLM's
    proxies are many clients), noting every event acknowledged."""
    post = 0
    while not stop.is_set():
        batch = events(tag, post)
        post += 1
        try:
            response = httpx.post(
                receiver.callback_url, json=batch, headers=receiver.auth, timeout=30
            )
        except httpx.TransportError:
            with load.lock:
                load.failed += 1
            if load.failed > 50:
                return
            time.sleep(0.05)
            continue
        if response.status_code == 200:
            with load.lock:
                load.acknowledged.update(e["id"] for e in batch)


def under_load(receiver: ReceiverProcess, clients: int, load: Load) -> tuple:
    stop = threading.Event()
    threads = [
        threading.Thread(target=drive, args=(receiver, f"c{c}", load, stop), daemon=True)
        for c in range(clients)
    ]
    for thread in threads:
        thread.start()
    return stop, threads


def landed(data_dir) -> tuple[set[str], set[str]]:
    """Request ids landed in ``HOUR``, and the writer ids of the files holding them."""
    zone = LandingZone(data_dir)
    read = zone.read_hours([HOUR])
    assert read.malformed == [] and read.torn_bytes == 0
    writers = {
        name.rsplit("/", 1)[1].rsplit("-", 1)[0]  # <writer-id>-<seq>.ndjson
        for name in read.files
    }
    return set(read.table.column("request_id").to_pylist()), writers


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_workers_default_to_one_per_core():
    assert parse_args([]).workers == os.cpu_count()
    assert parse_args(["--workers", "3"]).workers == 3


def test_two_workers_both_land_under_load(tmp_path):
    load = Load()
    with ReceiverProcess(tmp_path / "data", "--workers", "2") as receiver:
        workers = receiver.worker_ids()
        assert len(workers) == 2
        stop, threads = under_load(receiver, clients=4, load=load)
        time.sleep(4)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        metrics = receiver.metrics()
        by_worker = receiver.metric_samples()
    ids, writers = landed(tmp_path / "data")
    assert load.acknowledged and load.acknowledged <= ids
    assert writers == workers  # both wrote, each under its own writer id
    assert metrics["spend_receiver_events_accepted_total"] == len(load.acknowledged)
    for worker in workers:  # each worker's own count, in one scrape
        assert by_worker[f'spend_receiver_events_accepted_total{{worker="{worker}"}}'] > 0
    assert metrics["spend_receiver_writer_up"] == 2  # one landing writer per worker


def test_sigterm_drains_every_worker_and_loses_no_acknowledged_event(tmp_path):
    load = Load()
    receiver = ReceiverProcess(tmp_path / "data", "--workers", "2")
    try:
        receiver.start()
        parent = receiver.process.pid
        workers = children(parent)
        stop, threads = under_load(receiver, clients=6, load=load)
        time.sleep(2)  # requests in flight in both workers
        exit_code = receiver.stop(timeout=60)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        receiver.kill()
    assert exit_code in (0, -signal.SIGTERM)
    deadline = time.monotonic() + 10  # the workers, and the helper that outlives them briefly
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []
    ids, writers = landed(tmp_path / "data")
    assert len(load.acknowledged) > 0
    assert load.acknowledged <= ids, f"{len(load.acknowledged - ids)} acknowledged events lost"
    assert len(writers) == 2
    log = receiver.log_path.read_text()
    assert log.count("stopped after") == 2  # each worker's writer drained and stopped
    assert "Traceback" not in log


def test_persistent_connections_are_spread_over_the_workers(tmp_path):
    # Four clients that keep their connections, opened at once, as a busy LiteLLM does: the
    # worker that accepted more than its share asks clients to reconnect until each worker
    # holds two.
    with ReceiverProcess(tmp_path / "data", "--workers", "2") as receiver:
        clients = [http.client.HTTPConnection("127.0.0.1", receiver.port) for _ in range(4)]
        headers = {**receiver.auth, "Content-Type": "application/json"}

        def post_from(client: http.client.HTTPConnection, number: int) -> None:
            for post in range(15):
                client.request(
                    "POST", "/litellm/callback", json.dumps(events(f"k{number}", post)), headers
                )
                response = client.getresponse()
                assert response.status == 200, response.read()
                response.read()

        threads = [
            threading.Thread(target=post_from, args=(client, n)) for n, client in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        scrape = httpx.get(f"{receiver.url}/metrics", timeout=5)
        held = {
            worker: float(value) - (worker == scrape.headers["x-receiver-worker"])  # the scrape's
            for worker, value in re.findall(
                r'spend_receiver_open_connections\{worker="([^"]+)"\} (\S+)', scrape.text
            )
        }
        for client in clients:
            client.close()
    assert sorted(held.values()) == [2, 2], held


def test_one_worker_is_one_process_as_before(tmp_path):
    with ReceiverProcess(tmp_path / "data", "--workers", "1") as receiver:
        pid = receiver.process.pid
        response = httpx.post(
            receiver.callback_url, json=events("single", 0), headers=receiver.auth, timeout=30
        )
        assert response.json() == {"accepted": EVENTS_PER_POST, "quarantined": 0}
        health = httpx.get(f"{receiver.url}/healthz", timeout=5)
        assert children(pid) == []  # no supervisor, no worker processes
        (writer,) = receiver.worker_ids()
        assert health.headers["x-receiver-worker"] == writer
        assert writer.endswith(f"-{pid}")
        assert receiver.metrics()["spend_receiver_events_accepted_total"] == EVENTS_PER_POST
        exit_code = receiver.stop()
    assert exit_code in (0, -signal.SIGTERM)
    assert landed(tmp_path / "data")[1] == {writer}


def test_healthz_names_the_worker_that_answered(tmp_path):
    with ReceiverProcess(tmp_path / "data", "--workers", "2") as receiver:
        workers = receiver.worker_ids()
        answered = set()
        deadline = time.monotonic() + 30
        while answered != workers and time.monotonic() < deadline:
            health = httpx.get(f"{receiver.url}/healthz", timeout=5)  # a new connection each
            assert health.json() == {"status": "ok"}
            answered.add(health.headers["x-receiver-worker"])
        assert answered == workers


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_workers_must_be_at_least_one(tmp_path, workers):
    from receiver.cli import main

    with pytest.raises(SystemExit, match="--workers must be at least 1"):
        main(["--no-auth", "--data-dir", str(tmp_path), "--workers", workers])
