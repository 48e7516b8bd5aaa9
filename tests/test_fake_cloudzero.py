"""The fake AnyCost Stream API itself, driven with plain httpx requests."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest

from tests.fake_cloudzero import API_KEY, FakeAnyCost, Fault

H10, H11, H12 = "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", "2026-03-01T12:00:00Z"
APRIL = "2026-04-02T00:00:00Z"
AUTO = object()  # post(): send the body's real SHA-256 as the idempotency key


def row(hour: str, cost: str = "1.25", resource: str = "litellm/gpt-4o") -> dict[str, str]:
    return {
        "time/usage_start": hour,
        "lineitem/type": "Usage",
        "resource/service": "LLM",
        "resource/id": resource,
        "cost/cost": cost,
    }


def encode(rows: list, operation: str = "replace_hourly", month: str = "2026-03") -> bytes:
    return json.dumps({"month": month, "operation": operation, "data": rows}).encode()


def post(
    client: httpx.Client,
    fake: FakeAnyCost,
    raw: bytes,
    key: object = AUTO,
    authorization: str | None = API_KEY,
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    if key is AUTO:
        headers["cloudzero-idempotency-key"] = hashlib.sha256(raw).hexdigest()
    elif key is not None:
        headers["cloudzero-idempotency-key"] = str(key)
    return client.post(fake.billing_drops_url, content=raw, headers=headers)


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def fake() -> Iterator[FakeAnyCost]:
    with FakeAnyCost() as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def test_raw_key_is_required_and_bearer_prefix_is_refused(fake, client):
    raw = encode([row(H10)])
    missing = post(client, fake, raw, authorization=None)
    wrong = post(client, fake, raw, authorization="cz-someone-else")
    bearer = post(client, fake, raw, authorization=f"Bearer {API_KEY}")

    assert missing.status_code == 401 and missing.json()["message"]
    assert (wrong.status_code, bearer.status_code) == (403, 403)
    assert API_KEY not in bearer.text
    assert fake.ledger == {}
    assert post(client, fake, raw).status_code == 200  # the same keep-alive connection


def test_unknown_path_or_connection_is_404_and_other_methods_405(fake, client):
    other_connection = fake.billing_drops_url.replace("conn-fake-0001", "conn-other")
    assert (
        client.post(other_connection, content=b"{}", headers={"Authorization": API_KEY}).status_code
        == 404
    )
    assert client.get(f"{fake.url}/v2/nothing").status_code == 404
    get = client.get(fake.billing_drops_url, headers={"Authorization": API_KEY})
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert "message" in get.json()


def test_body_over_max_bytes_is_413_and_the_connection_stays_usable():
    small = encode([row(H10)])
    big = encode([row(H10, resource=f"r{i}") for i in range(40)])
    with FakeAnyCost(max_body_bytes=len(small) + 10) as fake, httpx.Client(timeout=5) as client:
        too_big = post(client, fake, big)
        assert too_big.status_code == 413 and "bytes" in too_big.json()["message"]
        assert post(client, fake, small).status_code == 200
        assert [r.bytes for r in fake.requests] == [len(big), len(small)]
        assert [r.status for r in fake.requests] == [413, 200]
        assert len(fake.rows_of(H10)) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (encode([row(H10)], month="2026-3"), "month"),
        (encode([row(APRIL)]), "outside month"),
        (encode([{**row(H10), "usage/amount": 3}]), "must be a string"),
        (encode([row(H10, cost="1.5E-7")]), "fixed-point"),
        (encode([row(H10)], operation="upsert"), "operation"),
        (encode([row("2026-03-01T10:30:00Z")]), "whole UTC hour"),
        (encode([]), "non-empty"),
    ],
    ids=[
        "bad-month",
        "outside-month",
        "non-string",
        "exponent-cost",
        "operation",
        "half-hour",
        "empty",
    ],
)
def test_invalid_bodies_are_400_with_the_reason_and_not_applied(fake, client, raw, reason):
    answer = post(client, fake, raw)
    assert answer.status_code == 400
    assert reason in answer.json()["message"]
    assert fake.ledger == {}
    assert fake.requests[0].applied is False


def test_replace_hourly_replaces_only_the_hours_in_the_body(fake, client):
    assert (
        post(client, fake, encode([row(H10, "1"), row(H11, "2"), row(H11, "3")])).status_code == 200
    )
    assert post(client, fake, encode([row(H11, "7.5")])).status_code == 200
    assert fake.hour_totals() == {H10: Decimal("1"), H11: Decimal("7.5")}
    assert fake.rows_of(H11) == [row(H11, "7.5")]


def test_one_hour_split_over_two_replace_hourly_bodies_keeps_only_the_second_part(fake, client):
    post(client, fake, encode([row(H10, "0.10", "a"), row(H10, "0.20", "b")]))
    post(client, fake, encode([row(H10, "0.30", "c")]))
    assert [r["resource/id"] for r in fake.rows_of(H10)] == ["c"]
    assert fake.hour_totals() == {H10: Decimal("0.30")}


def test_sum_appends_so_sending_twice_doubles(fake, client):
    post(client, fake, encode([row(H10, "0.000000123456789")]))
    continuation = encode([row(H10, "0.1")], operation="sum")
    assert post(client, fake, continuation).status_code == 200
    assert post(client, fake, continuation).status_code == 200
    assert fake.hour_totals() == {H10: Decimal("0.200000123456789")}  # exact, no float
    assert len(fake.rows_of(H10)) == 3


def test_replace_drop_clears_the_whole_month_only(fake, client):
    post(client, fake, encode([row(H10), row(H11)]))
    post(client, fake, encode([row(APRIL, "9")], month="2026-04"))
    assert post(client, fake, encode([row(H12, "4")], operation="replace_drop")).status_code == 200
    assert fake.hour_totals() == {H12: Decimal("4"), APRIL: Decimal("9")}


def test_missing_or_wrong_idempotency_key_is_a_violation_but_still_served(fake, client):
    raw = encode([row(H10)])
    assert post(client, fake, raw).status_code == 200
    assert fake.violations == []
    assert post(client, fake, raw, key=None).status_code == 200
    assert post(client, fake, raw, key="0" * 64).status_code == 200
    violations = fake.violations
    assert len(violations) == 2
    assert "missing" in violations[0] and "SHA-256" in violations[1]
    assert [r.idempotency_key for r in fake.requests][1:] == [None, "0" * 64]
    assert all(r.applied for r in fake.requests)


def test_honoured_idempotency_key_answers_the_earlier_drop_without_reapplying(client):
    raw = encode([row(H10, "2")], operation="sum")
    with FakeAnyCost(honour_idempotency_key=True) as fake:
        first, again = post(client, fake, raw), post(client, fake, raw)
        assert first.status_code == again.status_code == 200
        assert again.json()["drop_id"] == first.json()["drop_id"]
        assert fake.hour_totals() == {H10: Decimal("2")}
        assert [r.applied for r in fake.requests] == [True, False]


def test_faults_are_taken_in_order_by_good_requests_only(fake, client):
    fake.inject(Fault.status(429, retry_after=3), Fault.status(503))
    raw = encode([row(H10)])
    assert post(client, fake, raw, authorization="wrong").status_code == 403  # takes no fault
    throttled = post(client, fake, raw)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    unavailable = post(client, fake, raw)
    assert unavailable.status_code == 503 and "Retry-After" not in unavailable.headers
    assert fake.ledger == {}
    ok = post(client, fake, raw)
    assert ok.status_code == 200 and len(ok.json()["drop_id"]) == 32
    assert [r.fault for r in fake.requests] == [
        None,
        "status 429 (not applied)",
        "status 503 (not applied)",
        None,
    ]


def test_status_fault_applied_changes_the_ledger_then_fails(fake, client):
    fake.inject(Fault.status(500, applied=True))
    assert post(client, fake, encode([row(H10, "5")])).status_code == 500
    assert fake.hour_totals() == {H10: Decimal("5")}
    (request,) = fake.requests
    assert request.applied and request.drop_id and request.status == 500


def test_drop_closes_the_connection_without_answer_applied_or_not(fake, client):
    fake.inject(Fault.drop(), Fault.drop(applied=True))
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, fake, encode([row(H10, "1")]))
    assert fake.ledger == {}
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, fake, encode([row(H11, "2")]))
    assert fake.hour_totals() == {H11: Decimal("2")}
    assert [(r.status, r.applied) for r in fake.requests] == [(None, False), (None, True)]
    assert post(client, fake, encode([row(H12)])).status_code == 200  # served normally after


def test_hang_times_out_the_client_after_applying_and_is_not_in_flight(fake):
    fake.inject(Fault.hang(5.0))
    with httpx.Client(timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        post(impatient, fake, encode([row(H10, "3")]))
    assert fake.hour_totals() == {H10: Decimal("3")}
    with httpx.Client(timeout=5) as retrying:  # while the first answer is still held
        assert post(retrying, fake, encode([row(H10, "3")])).status_code == 200
    assert fake.violations == []
    assert [(r.status, r.applied) for r in fake.requests] == [(None, True), (200, True)]
    started = time.monotonic()
    fake.stop()  # releases the held handler rather than waiting out the 5 s
    assert time.monotonic() - started < 2.0


def test_slow_waits_then_serves_normally(fake, client):
    fake.inject(Fault.slow(0.2))
    started = time.monotonic()
    answer = post(client, fake, encode([row(H10)]))
    assert answer.status_code == 200 and time.monotonic() - started >= 0.2
    (request,) = fake.requests
    assert request.applied and request.fault == "slow 0.2s"
    assert request.finished_at - request.received_at >= 0.2


def test_a_second_request_while_one_is_in_flight_is_a_429_and_a_violation(fake):
    fake.inject(Fault.slow(0.6))
    first: list[httpx.Response] = []

    def send_first() -> None:
        with httpx.Client(timeout=5) as own:
            first.append(post(own, fake, encode([row(H10, "1")])))

    thread = threading.Thread(target=send_first)
    thread.start()
    wait_until(lambda: any(r.fault for r in fake.requests))  # the first is sleeping in flight
    with httpx.Client(timeout=5) as other:
        second = post(other, fake, encode([row(H11, "2")]))
    thread.join(5)

    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    assert first[0].status_code == 200
    assert fake.violations == ["concurrent request: 2 in flight"]
    assert fake.hour_totals() == {H10: Decimal("1")}


def test_requests_are_recorded_and_reset_clears_everything(fake, client):
    raw = encode([row(H11), row(H10), row(H10)])
    drop_id = post(client, fake, raw).json()["drop_id"]
    (request,) = fake.requests
    assert (request.method, request.operation, request.month) == (
        "POST",
        "replace_hourly",
        "2026-03",
    )
    assert (request.hours, request.rows, request.bytes) == ([H10, H11], 3, len(raw))
    assert request.idempotency_key == hashlib.sha256(raw).hexdigest()
    assert (request.status, request.drop_id) == (200, drop_id)
    assert request.received_at <= request.finished_at

    fake.inject(Fault.status(500))
    post(client, fake, raw, key=None)
    fake.reset()
    assert (fake.ledger, fake.requests, fake.violations) == ({}, [], [])
    assert post(client, fake, raw).status_code == 200  # the queued fault went too
