"""Delivering packed bodies to CloudZero's AnyCost Stream API, exactly, under faults.

One body is one ``POST .../billing_drops`` with the raw API key in ``Authorization`` and
``cloudzero-idempotency-key`` set to the SHA-256 of the body. Requests go one at a time
(CloudZero allows one in flight per connection; the httpx client holds one connection).

What each answer means:

* 2xx: accepted; CloudZero's ``drop_id`` is kept for the receipt.
* 429, 408, 5xx, a timeout or a dropped connection: retried with exponential backoff and
  full jitter, waiting at least ``Retry-After`` when CloudZero sends one, within
  ``RetryPolicy.max_attempts`` and ``RetryPolicy.budget_seconds`` per delivery unit.
* 413: the body is split and the pieces resent (hours halved; one hour re-packed smaller).
* any other 4xx (400, 401, 403, …): not retried; :class:`CloudZeroRejected` carries
  CloudZero's own message.

A ``replace_hourly`` body is idempotent, so retrying it is safe even when an earlier
attempt may have been applied. A ``sum`` continuation is not: after an ambiguous failure it
may or may not have been added. So when a continuation fails in any way, the whole hour
restarts from its ``replace_hourly`` body, which deletes whatever the hour held.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from resources.cloudzero_bodies import Body, delivery_units, pack_bodies, rows_by_hour

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MESSAGE_LIMIT = 500  # characters of CloudZero's error message kept in errors and receipts


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one delivery unit (a body, or an oversize hour's bodies)."""

    max_attempts: int = 8
    budget_seconds: float = 600.0
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(failures-1))]."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failures - 1))
        return rng.uniform(0, ceiling)


@dataclass(frozen=True)
class Answer:
    """What CloudZero said to one POST."""

    status: int
    message: str
    drop_id: str | None
    retry_after: float | None


class CloudZeroError(Exception):
    """A body CloudZero did not accept; ``hours`` are the hours left unsent or partial."""

    def __init__(self, text: str, hours: Sequence[datetime] = ()) -> None:
        super().__init__(text)
        self.hours = tuple(hours)


class CloudZeroRejected(CloudZeroError):
    """CloudZero refused the request (4xx other than 408/413/429): retrying cannot help."""


class CloudZeroUnavailable(CloudZeroError):
    """Retries ran out (attempts or time) on 429/5xx/timeouts/dropped connections."""


class _TooLarge(Exception):
    """413: the body must be split."""


class _ContinuationFailed(Exception):
    def __init__(self, failure: str, retry_after: float | None) -> None:
        super().__init__(failure)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivery:
    """One delivery unit that CloudZero accepted: its final bodies and every POST it took."""

    bodies: list[Body]
    attempts: int
    drop_ids: list[str | None]
    failures: list[str]  # what went wrong on the way (413 splits, restarts), for the receipt


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - (now or datetime.now(timezone.utc))).total_seconds())


def error_message(response: httpx.Response, secret: str | None = None) -> str:
    """CloudZero's own words from an error answer, shortened, with the API key blanked."""
    text = response.text
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in ("message", "error", "detail", "errors"):
            if payload.get(key):
                value = payload[key]
                text = value if isinstance(value, str) else json.dumps(value)
                break
    text = " ".join(text.split())[:MESSAGE_LIMIT] or response.reason_phrase
    if secret:
        text = text.replace(secret, "<CLOUDZERO_API_KEY>")
    return text


class AnyCostTransport:
    """One POST per call over a single keep-alive connection."""

    def __init__(self, url: str, api_key: str, timeout_seconds: float) -> None:
        self.url, self._api_key = url, api_key
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )

    def __call__(self, body: Body) -> Answer:
        response = self._client.post(
            self.url,
            content=body.to_bytes(),
            headers={
                "Authorization": self._api_key,
                "cloudzero-idempotency-key": body.idempotency_key,
            },
        )
        drop_id = None
        if response.is_success:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if isinstance(payload, dict) and payload.get("drop_id") is not None:
                drop_id = str(payload["drop_id"])
        return Answer(
            status=response.status_code,
            message="" if response.is_success else error_message(response, self._api_key),
            drop_id=drop_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._client.close()


class AnyCostSender:
    """Delivers bodies in order, unit by unit (see the module docstring)."""

    def __init__(
        self,
        transport: Callable[[Body], Answer],
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.transport, self.policy, self.sleep, self.clock = transport, policy, sleep, clock
        self.rng = rng or random.Random()
        self.posts = 0  # every POST made, accepted or not

    def deliver(self, unit: list[Body]) -> list[Delivery]:
        """Deliver one unit; a 413 may turn it into several deliveries (split hours)."""
        deadline, first_post, failures = self.clock() + self.policy.budget_seconds, self.posts, []
        while True:
            accepted: list[Body] = []
            drop_ids: list[str | None] = []
            for position, body in enumerate(unit):
                try:
                    drop_ids.append(self._post(body, deadline, first_post, position > 0))
                except _TooLarge:
                    pieces = _split(unit, body)
                    if len(pieces) > 1:  # whole hours apart: each piece is a unit of its own
                        return [d for piece in pieces for d in self.deliver(piece)]
                    failures.append(f"HTTP 413 for a {body.size}-byte body: re-packed smaller")
                    unit = pieces[0]
                    break
                except _ContinuationFailed as failure:
                    failures.append(f"sum continuation failed ({failure}): hour restarted")
                    self._pause(first_post, failure.retry_after, deadline, str(failure), unit)
                    break
                accepted.append(body)
            else:
                return [Delivery(accepted, self.posts - first_post, drop_ids, failures)]

    def _post(self, body: Body, deadline: float, first_post: int, continuation: bool) -> str | None:
        """POST until accepted and return CloudZero's drop id; raise when giving up."""
        while True:
            self.posts += 1
            try:
                answer = self.transport(body)
            except httpx.TransportError as error:  # timeouts and dropped connections included
                failure, retry_after = f"{type(error).__name__}: {error}", None
            else:
                if 200 <= answer.status < 300:
                    return answer.drop_id
                if answer.status == 413:
                    raise _TooLarge()
                failure, retry_after = f"HTTP {answer.status}: {answer.message}", answer.retry_after
                if answer.status not in RETRYABLE_STATUSES and answer.status < 500:
                    raise CloudZeroRejected(
                        f"CloudZero rejected the {body.operation} body for {_hours_text(body.hours)}"
                        f" with {failure}",
                        body.hours,
                    )
            if continuation:
                raise _ContinuationFailed(failure, retry_after)
            self._pause(first_post, retry_after, deadline, failure, [body])

    def _pause(
        self,
        first_post: int,
        retry_after: float | None,
        deadline: float,
        failure: str,
        unit: Sequence[Body],
    ) -> None:
        """Back off before the next POST, or give up when attempts or time run out."""
        attempts = self.posts - first_post
        delay = max(self.policy.backoff(attempts, self.rng), retry_after or 0.0)
        if attempts >= self.policy.max_attempts or self.clock() + delay > deadline:
            hours = sorted({h for body in unit for h in body.hours})
            raise CloudZeroUnavailable(
                f"CloudZero did not accept {_hours_text(hours)} after {attempts} attempts "
                f"within the retry budget ({self.policy.max_attempts} attempts, "
                f"{self.policy.budget_seconds:g} s); last answer: {failure}",
                hours,
            )
        self.sleep(delay)


def _split(unit: list[Body], failed: Body) -> list[list[Body]]:
    """Units to send instead after a 413 on ``failed``: the unit's hours in two halves, or,
    for one hour, the hour re-packed into bodies no larger than half the refused body."""
    hours = rows_by_hour(unit)
    if len(hours) > 1:
        ordered = sorted(hours)
        halves = (ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :])
        return [
            u
            for half in halves
            for u in delivery_units(pack_bodies({h: hours[h] for h in half}, failed.size))
        ]
    ((hour, rows),) = hours.items()
    try:
        return [pack_bodies({hour: rows}, max_body_bytes=failed.size // 2)]
    except ValueError as error:  # a single row no longer fits: nothing smaller can be sent
        raise CloudZeroRejected(
            f"CloudZero answered 413 to a {failed.size}-byte body for {_hours_text([hour])}, "
            f"which cannot be split further: {error}",
            (hour,),
        ) from None


def _hours_text(hours: Sequence[datetime]) -> str:
    stamps = [f"{h.astimezone(timezone.utc):%Y-%m-%dT%H}:00Z" for h in hours]
    if len(stamps) == 1:
        return f"hour {stamps[0]}"
    if len(stamps) <= 3:
        return "hours " + ", ".join(stamps)
    return f"{len(stamps)} hours, {stamps[0]} to {stamps[-1]}"
