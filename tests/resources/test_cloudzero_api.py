"""The AnyCost sender against a scripted transport: retries, splits, restarts, give-ups."""

import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from resources.cloudzero_api import (
    Answer,
    AnyCostSender,
    CloudZeroRejected,
    CloudZeroUnavailable,
    RetryPolicy,
    error_message,
    parse_retry_after,
)
from resources.cloudzero_bodies import Body, delivery_units, pack_bodies, rows_by_hour
from tests.cbf_rows import hour_rows

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
OK = Answer(200, "", "drop-ok", None)


class Script:
    """A transport that answers from a script (then 200), recording every body it got."""

    def __init__(self, *answers: Answer | Exception | type[Exception]) -> None:
        self.answers = list(answers)
        self.sent: list[Body] = []

    def __call__(self, body: Body) -> Answer:
        self.sent.append(body)
        if not self.answers:
            return Answer(200, "", f"drop-{len(self.sent)}", None)
        answer = self.answers.pop(0)
        if isinstance(answer, Answer):
            return answer
        raise answer if isinstance(answer, Exception) else answer("scripted")


class Clock:
    """Fake time: ``sleep`` advances ``now``; every pause is recorded."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def sender(script: Script, clock: Clock, **policy) -> AnyCostSender:
    policy = {"base_delay_seconds": 1.0, "max_delay_seconds": 30.0, **policy}
    return AnyCostSender(
        script, RetryPolicy(**policy), clock.sleep, lambda: clock.now, random.Random(7)
    )


def one_body(hours: int = 1, rows: int = 3) -> list[Body]:
    """A unit of one replace_hourly body carrying ``hours`` whole hours."""
    each = {
        START + timedelta(hours=h): hour_rows(START + timedelta(hours=h), rows)
        for h in range(hours)
    }
    [unit] = delivery_units(pack_bodies(each))
    return unit


def test_accepted_first_time_keeps_the_drop_id():
    script, clock = Script(OK), Clock()
    [delivery] = sender(script, clock).deliver(one_body())
    assert delivery.drop_ids == ["drop-ok"] and delivery.attempts == 1
    assert clock.sleeps == [] and delivery.failures == []


def test_429_waits_at_least_retry_after():
    script, clock = Script(Answer(429, "slow down", None, 7.0), Answer(429, "", None, 2.0)), Clock()
    [delivery] = sender(script, clock).deliver(one_body())
    assert delivery.attempts == 3 and len(script.sent) == 3
    assert clock.sleeps[0] >= 7.0 and clock.sleeps[1] >= 2.0


@pytest.mark.parametrize(
    "failure",
    [
        Answer(500, "boom", None, None),
        Answer(502, "bad gateway", None, None),
        Answer(503, "unavailable", None, None),
        Answer(408, "timeout", None, None),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectError("connection refused"),
    ],
)
def test_transient_failures_are_retried_with_growing_jittered_backoff(failure):
    script, clock = Script(failure, failure, failure), Clock()
    [delivery] = sender(script, clock).deliver(one_body())
    assert delivery.attempts == 4
    assert len(clock.sleeps) == 3
    for n, pause in enumerate(clock.sleeps, start=1):
        assert 0 <= pause <= 2 ** (n - 1)  # full jitter under base * 2^(n-1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_fast_with_cloudzero_s_message(status):
    script, clock = Script(Answer(status, "month must be YYYY-MM", None, None)), Clock()
    with pytest.raises(CloudZeroRejected, match=f"HTTP {status}: month must be YYYY-MM") as info:
        sender(script, clock).deliver(one_body())
    assert len(script.sent) == 1 and clock.sleeps == []
    assert info.value.hours == (START,)
    assert "2026-03-01T00:00Z" in str(info.value)


def test_retries_stop_at_max_attempts():
    script, clock = Script(*[Answer(503, "down", None, None)] * 20), Clock()
    with pytest.raises(CloudZeroUnavailable, match="after 4 attempts.*HTTP 503: down"):
        sender(script, clock, max_attempts=4).deliver(one_body())
    assert len(script.sent) == 4


def test_retries_stop_when_the_time_budget_is_spent():
    script, clock = Script(*[Answer(503, "down", None, None)] * 50), Clock()
    with pytest.raises(CloudZeroUnavailable, match="retry budget"):
        sender(script, clock, max_attempts=50, budget_seconds=20).deliver(one_body())
    assert clock.now <= 20
    assert len(script.sent) < 50


def test_a_retry_after_beyond_the_budget_gives_up_at_once():
    script, clock = Script(Answer(429, "quota", None, 3600.0)), Clock()
    with pytest.raises(CloudZeroUnavailable, match="HTTP 429: quota"):
        sender(script, clock, budget_seconds=60).deliver(one_body())
    assert clock.sleeps == [] and len(script.sent) == 1


def test_413_on_a_multi_hour_body_splits_the_hours_and_sends_each_half_whole():
    unit = one_body(hours=6, rows=4)
    assert len(unit) == 1 and len(unit[0].hours) == 6
    script, clock = Script(Answer(413, "too large", None, None)), Clock()
    deliveries = sender(script, clock).deliver(unit)
    accepted = [b for d in deliveries for b in d.bodies]
    assert [len(b.hours) for b in accepted] == [3, 3]
    assert all(b.operation == "replace_hourly" and b.size < unit[0].size for b in accepted)
    assert rows_by_hour(accepted) == rows_by_hour(unit)


def test_413_on_one_hour_repacks_it_as_replace_then_sum():
    unit = one_body(hours=1, rows=20)
    script, clock = Script(Answer(413, "too large", None, None)), Clock()
    [delivery] = sender(script, clock).deliver(unit)
    assert [b.operation for b in delivery.bodies][0] == "replace_hourly"
    assert {b.operation for b in delivery.bodies[1:]} == {"sum"}
    assert all(b.size <= unit[0].size // 2 for b in delivery.bodies)
    assert rows_by_hour(delivery.bodies) == rows_by_hour(unit)
    assert "413" in delivery.failures[0]


def test_413_for_a_single_row_cannot_be_split():
    unit = one_body(hours=1, rows=1)
    script, clock = Script(Answer(413, "", None, None)), Clock()
    with pytest.raises(CloudZeroRejected, match="cannot be split further"):
        sender(script, clock).deliver(unit)


def oversize_unit() -> list[Body]:
    rows = hour_rows(START, 30)
    limit = pack_bodies({START: rows[:10]})[0].size
    [unit] = delivery_units(pack_bodies({START: rows}, max_body_bytes=limit))
    assert len(unit) >= 3
    return unit


@pytest.mark.parametrize(
    "failure",
    [
        Answer(500, "boom", None, None),
        Answer(429, "slow down", None, 1.0),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_a_failed_continuation_restarts_the_whole_hour_from_replace_hourly(failure):
    unit = oversize_unit()
    script, clock = Script(OK, failure), Clock()
    [delivery] = sender(script, clock).deliver(unit)
    operations = [b.operation for b in script.sent]
    assert operations[:2] == ["replace_hourly", "sum"]
    assert operations[2:] == [b.operation for b in unit]  # restarted from the top
    assert delivery.bodies == unit and delivery.attempts == len(script.sent)
    assert "hour restarted" in delivery.failures[0]


def test_a_continuation_that_keeps_failing_gives_up_within_the_budget():
    unit = oversize_unit()
    answers = [a for _ in range(10) for a in (OK, Answer(503, "down", None, None))]
    script, clock = Script(*answers), Clock()
    with pytest.raises(CloudZeroUnavailable, match="after 6 attempts") as info:
        sender(script, clock, max_attempts=6).deliver(unit)
    assert info.value.hours == (START,)


def test_retry_after_parses_seconds_and_http_dates():
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_error_message_prefers_cloudzero_s_message_and_blanks_the_key():
    secret = "cz-key-123"
    response = httpx.Response(400, json={"message": f"bad key {secret} in   body"})
    assert error_message(response, secret) == "bad key <CLOUDZERO_API_KEY> in body"
    assert error_message(httpx.Response(502, text="")) == "Bad Gateway"
    assert len(error_message(httpx.Response(500, text="x" * 5000))) == 500
