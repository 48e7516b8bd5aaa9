"""The running ``spend-receiver`` over real HTTP on 127.0.0.1, fed the captured bodies."""

import copy
import gzip
import json
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from assets.events import build_spend_events
from assets.ingest import webhook_events_table
from receiver.cli import DEFAULT_PORT
from resources.attribution import load_mapping
from resources.landing import LandingZone
from resources.landing_record import event_hour, landing_record
from tests.receiving import SPEND_RECEIVER, TOKENS, ReceiverProcess
from tests.samples import EMPTY, LITELLM_FIXTURES, captured_payloads

ARRAY_BODY = (LITELLM_FIXTURES / "generic_api_json_array_batch.json").read_bytes()
NDJSON_BODY = (LITELLM_FIXTURES / "generic_api_ndjson_batch.ndjson").read_bytes()
SINGLE_BODY = (LITELLM_FIXTURES / "generic_api_failure_event.json").read_bytes()
TRACKING_TOKEN = "trk-7f3a-never-on-disk"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    with ReceiverProcess(tmp_path_factory.mktemp("receiver") / "data") as running:
        yield running


def post(receiver, body: bytes, headers: dict | None = None) -> httpx.Response:
    headers = {**receiver.auth, "Content-Type": "application/json", **(headers or {})}
    return httpx.post(receiver.callback_url, content=body, headers=headers, timeout=30)


def landed(receiver, payloads) -> dict[str, int]:
    """How many landed lines each request id of ``payloads`` has, read from their hours."""
    hours = sorted({event_hour(landing_record(p, 0.0)) for p in payloads})
    read = LandingZone(receiver.data_dir).read_hours(hours)
    assert read.malformed == [] and read.torn_bytes == 0
    ids = read.table.column("request_id").to_pylist()
    return {p["id"]: ids.count(p["id"]) for p in payloads}


def fresh(payloads, tag: str):
    """Copies with new ids, so each test counts only its own events."""
    copies = copy.deepcopy(payloads)
    for n, payload in enumerate(copies):
        payload["id"] = f"{tag}-{n}"
        payload["litellm_call_id"] = f"{tag}-call-{n}"
    return copies


@pytest.mark.parametrize(
    ("body", "content_type", "events"),
    [
        (ARRAY_BODY, "application/json", 3),
        (NDJSON_BODY, "application/json", 3),  # LiteLLM labels NDJSON as JSON too
        (NDJSON_BODY, "application/x-ndjson", 3),
        (SINGLE_BODY, "application/json", 1),
    ],
    ids=["json_array", "ndjson", "ndjson-typed", "single"],
)
def test_every_litellm_log_format_lands(receiver, body, content_type, events):
    response = post(receiver, body, {"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": events, "quarantined": 0}


def test_a_gzip_body_lands(receiver, payloads):
    batch = fresh(payloads, "gzip")
    response = post(
        receiver, gzip.compress(json.dumps(batch).encode()), {"Content-Encoding": "gzip"}
    )
    assert response.json() == {"accepted": len(batch), "quarantined": 0}
    assert set(landed(receiver, batch).values()) == {1}


def test_events_land_in_their_own_hour_not_the_arrival_hour(receiver, payloads):
    late = fresh(payloads[:1], "late")[0]
    late["startTime"] -= 26 * 3600  # delivered a day late
    late["endTime"] -= 26 * 3600
    assert post(receiver, json.dumps([late]).encode()).json()["accepted"] == 1
    start = datetime.fromtimestamp(late["startTime"], tz=timezone.utc)
    folder = receiver.data_dir / "landing/litellm_webhook" / f"date={start:%Y-%m-%d}"
    files = list((folder / f"hour={start:%H}").glob("*.ndjson"))
    assert any(late["id"] in f.read_text() for f in files)


def test_invalid_events_are_quarantined_with_the_reason_and_the_rest_land(receiver, payloads):
    good = fresh(payloads[:2], "mixed")
    bad = [
        {"litellm_call_id": "bad-no-start", "messages": "secret prompt"},
        good[0] | {"id": "bad-cost", "response_cost": "free"},
        good[0] | {"id": "bad-tokens", "prompt_tokens": -5},
        "not an object",
    ]
    response = post(receiver, json.dumps([good[0], *bad, good[1]]).encode())
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "quarantined": 4}
    assert set(landed(receiver, good).values()) == {1}
    quarantined = [
        json.loads(line)
        for f in (receiver.data_dir / "landing/_quarantine").rglob("*.ndjson")
        for line in f.read_text().splitlines()
    ]
    reasons = {
        q.get("id") or q.get("litellm_call_id") or q["index"]: q["reason"] for q in quarantined
    }
    assert reasons["bad-no-start"] == "missing startTime"
    assert reasons["bad-cost"] == "response_cost is a JSON string, not a finite number"
    assert reasons["bad-tokens"] == "prompt_tokens is negative"
    assert "secret prompt" not in json.dumps(quarantined)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'[{"id": "x", "startTime": 1', "invalid JSON"),
        (b"", "empty body"),
        (b'"hello"', "body is a JSON string"),
    ],
)
def test_a_body_without_usable_json_is_refused_with_400_and_the_reason(receiver, body, reason):
    response = post(receiver, body)
    assert response.status_code == 400
    assert reason in response.json()["error"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKENS[0]}", f"Bearer {TOKENS[0]}x", "Bearer", TOKENS[0]],
)
def test_callbacks_without_a_valid_bearer_token_get_401(receiver, authorization):
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = httpx.post(receiver.callback_url, content=ARRAY_BODY, headers=headers, timeout=30)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_both_tokens_of_a_rotation_are_accepted(receiver):
    for token in TOKENS:
        response = post(receiver, SINGLE_BODY, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 200


def test_routes_and_methods(receiver):
    assert httpx.get(f"{receiver.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(receiver.callback_url).status_code == 405
    assert httpx.post(f"{receiver.url}/ingest", content=b"[]").status_code == 404


def test_metrics_count_what_happened(receiver):
    before = receiver.metrics()
    post(receiver, ARRAY_BODY)
    post(receiver, b"[}")
    httpx.post(receiver.callback_url, content=ARRAY_BODY)
    after = receiver.metrics()

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    assert delta("spend_receiver_events_accepted_total") == 3
    assert delta('spend_receiver_requests_rejected_total{reason="invalid_body"}') == 1
    assert delta('spend_receiver_requests_rejected_total{reason="unauthorized"}') == 1
    assert delta('spend_receiver_requests_total{code="200"}') == 1
    assert delta("spend_receiver_received_bytes_total") == len(ARRAY_BODY) + 2
    assert delta("spend_receiver_commits_total") == 1
    assert delta("spend_receiver_commit_seconds_count") == 1
    assert delta("spend_receiver_landed_bytes_total") > 0


def test_a_duplicate_delivery_is_counted_once_in_spend_events(receiver, payloads):
    batch = fresh(payloads[:3], "retried")
    body = json.dumps(batch).encode()
    assert post(receiver, body).json()["accepted"] == 3
    assert post(receiver, body).json()["accepted"] == 3  # LiteLLM retried after a timeout
    assert set(landed(receiver, batch).values()) == {2}

    hours = sorted({event_hour(landing_record(p, 0.0)) for p in batch})
    landing = LandingZone(receiver.data_dir).read_hours(hours).table
    events = build_spend_events(EMPTY, webhook_events_table(landing), load_mapping(None))
    ids = {p["id"] for p in batch}
    rows = {r["request_id"]: r for r in events.to_pylist() if r["request_id"] in ids}
    assert sorted(rows) == sorted(ids)
    assert {r["deliveries"] for r in rows.values()} == {2}
    for payload in batch:
        # LiteLLM's float, exactly as far as the lake's DECIMAL(38, 18) holds it
        expected = Decimal(repr(payload["response_cost"])).quantize(Decimal("1e-18"))
        assert rows[payload["id"]]["cost"] == expected


class TestLimits:
    @pytest.fixture(scope="class")
    @classmethod
    def small(cls, tmp_path_factory):
        data_dir = tmp_path_factory.mktemp("small") / "data"
        with ReceiverProcess(data_dir, "--max-body-mb", "0.05") as running:  # 52,428 bytes
            yield running

    def test_a_body_over_the_limit_gets_413(self, small):
        response = post(small, b"[" + b" " * 60_000 + b"]")
        assert response.status_code == 413
        assert "52428-byte limit" in response.json()["error"]

    def test_a_chunked_body_over_the_limit_gets_413(self, small):
        chunks = (b" " * 10_000 for _ in range(8))  # no Content-Length: counted as it arrives
        response = httpx.post(small.callback_url, content=chunks, headers=small.auth, timeout=30)
        assert response.status_code == 413

    def test_a_gzip_body_inflating_over_the_limit_gets_413(self, small):
        bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
        response = post(small, bomb, {"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert httpx.get(f"{small.url}/healthz").status_code == 200

    def test_an_unknown_content_encoding_gets_415(self, small):
        response = post(small, b"[]", {"Content-Encoding": "br"})
        assert response.status_code == 415


def test_it_refuses_to_start_without_tokens_unless_told(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SPEND_WEBHOOK_TOKENS": " , "}
    refused = subprocess.run(
        [str(SPEND_RECEIVER), "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "SPEND_WEBHOOK_TOKENS is empty" in refused.stderr and "--no-auth" in refused.stderr
    with ReceiverProcess(tmp_path / "data", "--no-auth", tokens=()) as open_receiver:
        response = httpx.post(open_receiver.callback_url, content=SINGLE_BODY, timeout=30)
        assert response.status_code == 200
        assert "auth OFF" in open_receiver.log_path.read_text()


def test_the_default_port_is_the_documented_one():
    assert DEFAULT_PORT == 4012


def test_sigterm_stops_gracefully_after_the_writer_drains(tmp_path):
    running = ReceiverProcess(tmp_path / "data", "--workers", "1").start()
    assert post(running, ARRAY_BODY).status_code == 200
    # uvicorn re-raises the signal once shut down, so the status is SIGTERM's own.
    assert running.stop() == -signal.SIGTERM
    assert "landing writer stopped after 1 commit(s)" in running.log_path.read_text()


def test_no_token_prompt_response_or_tracking_header_reaches_disk_or_log(receiver):
    payloads = fresh(captured_payloads(), "private")
    for payload in payloads:
        payload["metadata"]["requester_custom_headers"]["x-tracking-token"] = TRACKING_TOKEN
    assert post(receiver, json.dumps(payloads).encode()).status_code == 200
    post(receiver, ARRAY_BODY, {"Authorization": "Bearer some-wrong-token-value"})
    forbidden = [*TOKENS, "some-wrong-token-value", TRACKING_TOKEN]
    for payload in payloads:  # the content LiteLLM sent along
        forbidden += [json.dumps(payload["messages"]), json.dumps(payload["response"])]
        forbidden += [
            m["content"] for m in payload["messages"] if isinstance(m.get("content"), str)
        ]
    files = [f for f in receiver.data_dir.rglob("*") if f.is_file()] + [receiver.log_path]
    assert len(files) > 3
    for path in files:
        text = path.read_text()
        leaked = [secret for secret in forbidden if secret and secret in text]
        assert not leaked, f"{path} holds {leaked}"


def test_landed_times_and_hours_follow_start_time(receiver, payloads):
    batch = fresh(payloads[:1], "hour")
    start = datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=timezone.utc)
    batch[0]["startTime"] = start.timestamp()
    batch[0]["endTime"] = (start + timedelta(seconds=2)).timestamp()  # ends in the next hour
    assert post(receiver, json.dumps(batch).encode()).json()["accepted"] == 1
    assert landed(receiver, batch) == {batch[0]["id"]: 1}
