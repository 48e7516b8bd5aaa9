"""A fake CloudZero AnyCost Stream API on 127.0.0.1, with a ledger of what it was sent.

It serves ``POST /v2/connections/billing/anycost/{connection_id}/billing_drops`` and
reproduces what a sender can get wrong:

* auth: ``Authorization`` carries the raw API key (missing → 401, wrong or ``Bearer …`` →
  403); wrong path or connection id → 404; another method on the endpoint → 405;
* size: ``Content-Length`` above ``max_body_bytes`` → 413 (the body is read and discarded,
  up to ``DISCARD_LIMIT``, so a keep-alive client reads the answer instead of a reset);
* body: ``{"month", "operation", "data"}`` with string-only CBF rows, whole hours inside the
  month and fixed-point costs, else 400 with the reason and nothing applied;
* ledger semantics: ``replace_hourly`` replaces only the hours in the body (an hour split
  over two bodies keeps only the second part), ``sum`` appends (twice doubles),
  ``replace_drop`` replaces the body's whole month;
* one request at a time per connection: a POST arriving while another is in flight is
  answered 429 (``Retry-After: 1``), not applied, and recorded in ``violations``; a
  ``cloudzero-idempotency-key`` that is missing or not the SHA-256 of the body is also
  recorded there (the request is still served).

In flight means from the received request line and headers until the request is applied
or rejected; the counter drops *before* the answer is written, so a client that sends its
next request as soon as it reads an answer is never flagged, and a response held by
``Fault.hang`` does not count.

Faults are queued with ``inject``. Each is taken by the next POST that passes every check
(path, concurrency, auth, size, body), i.e. one that would otherwise be applied, so a
client's own mistakes never eat a fault. Every request is recorded as a ``ReceivedRequest``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import MAX_PREC, Context, Decimal, localcontext
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fake_server import FakeHandler, FakeServer, shutdown_socket

API_KEY = "cz-fake-api-key-7e41"
CONNECTION_ID = "conn-fake-0001"
IDEMPOTENCY_HEADER = "cloudzero-idempotency-key"
OPERATIONS = ("replace_hourly", "replace_drop", "sum")
REQUIRED_ROW_KEYS = tuple(
    "time/usage_start resource/id cost/cost lineitem/type resource/service".split()
)
DISCARD_LIMIT = 64 * 1024 * 1024  # a rejected body larger than this closes the connection

_ENDPOINT = re.compile(r"/v2/connections/billing/anycost/([^/]+)/billing_drops")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])", re.ASCII)
_HOUR = re.compile(r"(\d{4}-\d{2})-\d{2}T\d{2}:00:00Z", re.ASCII)
_FIXED_POINT = re.compile(r"-?\d+(\.\d+)?", re.ASCII)  # ASCII: Decimal takes other digits too


@dataclass(frozen=True)
class Fault:
    """What the next good request gets instead of a plain 200; build with the classmethods."""

    kind: str  # "status" | "drop" | "slow" | "hang"
    applied: bool = False  # apply to the ledger before failing (an ambiguous failure)
    code: int = 0
    retry_after: str | None = None
    seconds: float = 0.0

    @classmethod
    def status(
        cls, code: int, retry_after: str | int | None = None, applied: bool = False
    ) -> Fault:
        """Answer ``code`` with a JSON message (and ``Retry-After`` when given)."""
        after = None if retry_after is None else str(retry_after)
        return cls("status", applied, code=code, retry_after=after)

    @classmethod
    def drop(cls, applied: bool = False) -> Fault:
        """Close the TCP connection without any answer."""
        return cls("drop", applied)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Stay in flight for ``seconds``, then serve normally."""
        return cls("slow", True, seconds=seconds)

    @classmethod
    def hang(cls, seconds: float, applied: bool = True) -> Fault:
        """Hold the answer for ``seconds`` (not in flight), then close without answering."""
        return cls("hang", applied, seconds=seconds)

    def describe(self) -> str:
        if self.kind == "slow":
            return f"slow {self.seconds:g}s"
        what = {"status": f"status {self.code}", "drop": "drop", "hang": f"hang {self.seconds:g}s"}
        return f"{what[self.kind]} ({'applied' if self.applied else 'not applied'})"


@dataclass
class ReceivedRequest:
    """One request, recorded when its headers arrive and completed as it is served."""

    method: str
    path: str
    received_at: float  # time.monotonic()
    idempotency_key: str | None = None
    operation: str | None = None  # these four once the body has passed validation
    month: str | None = None
    hours: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0  # raw body length (the declared Content-Length for a 413)
    status: int | None = None  # None: not answered (dropped, hung, or client gone)
    applied: bool = False
    fault: str | None = None
    drop_id: str | None = None
    message: str | None = None  # the error message answered
    finished_at: float | None = None


class InvalidBody(ValueError):
    """A body CloudZero would refuse with 400; the text is the message."""


class FakeAnyCost(FakeServer):
    """The fake API; a context manager serving on ``url`` (the base URL) until it exits."""

    def __init__(
        self,
        api_key: str = API_KEY,
        connection_id: str = CONNECTION_ID,
        max_body_bytes: int = 5_000_000,
        honour_idempotency_key: bool = False,
    ) -> None:
        self.api_key, self.connection_id = api_key, connection_id
        self.max_body_bytes = max_body_bytes
        self.honour_idempotency_key = honour_idempotency_key
        super().__init__(_Handler)
        self._ledger: dict[str, list[dict[str, str]]] = {}
        self._requests: list[ReceivedRequest] = []
        self._violations: list[str] = []
        self._faults: deque[Fault] = deque()
        self._applied_keys: dict[str, str] = {}  # idempotency key → drop_id
        self._in_flight = 0

    # --- what tests read (snapshots, taken under the lock) ---

    @property
    def billing_drops_url(self) -> str:
        return f"{self.url}/v2/connections/billing/anycost/{self.connection_id}/billing_drops"

    @property
    def ledger(self) -> dict[str, list[dict[str, str]]]:
        with self._lock:
            return {hour: list(rows) for hour, rows in sorted(self._ledger.items())}

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    def rows_of(self, hour: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self._ledger.get(hour, []))

    def hour_totals(self) -> dict[str, Decimal]:
        """Exact sum of ``cost/cost`` per hour (unbounded precision: no rounding)."""
        ledger = self.ledger
        with localcontext(Context(prec=MAX_PREC)):
            return {
                h: sum((Decimal(r["cost/cost"]) for r in rows), Decimal(0))
                for h, rows in ledger.items()
            }

    # --- setup ---

    def inject(self, *faults: Fault) -> None:
        """Queue faults, one for each of the next good requests (see the module docstring)."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._ledger.clear()
            self._requests.clear()
            self._violations.clear()
            self._faults.clear()
            self._applied_keys.clear()

    # --- used by the handler ---

    def _is_endpoint(self, path: str) -> bool:
        match = _ENDPOINT.fullmatch(urlsplit(path).path)
        return match is not None and unquote(match.group(1)) == self.connection_id

    def _fly(self, delta: int) -> int:
        """Count a request into (+1) or out of (-1) flight; how many are in flight now."""
        with self._lock:
            self._in_flight += delta
            return self._in_flight

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _apply(
        self, key: str | None, month: str, operation: str, rows: list[dict[str, str]]
    ) -> tuple[str, bool]:
        """Change the ledger; ``(drop_id, applied)``, not applied for an honoured repeat."""
        by_hour: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            by_hour.setdefault(row["time/usage_start"], []).append(row)
        with self._lock:
            if self.honour_idempotency_key and key is not None and key in self._applied_keys:
                return self._applied_keys[key], False
            if operation == "replace_drop":
                for hour in [h for h in self._ledger if h.startswith(f"{month}-")]:
                    del self._ledger[hour]
            elif operation == "replace_hourly":
                for hour in by_hour:
                    self._ledger.pop(hour, None)
            for hour, hour_rows in by_hour.items():
                self._ledger.setdefault(hour, []).extend(hour_rows)
            drop_id = uuid.uuid4().hex
            if key is not None:  # applied, whatever was answered: a repeat is a duplicate
                self._applied_keys[key] = drop_id
            return drop_id, True


def validate_body(raw: bytes) -> tuple[str, str, list[dict[str, str]]]:
    """``(month, operation, rows)`` of a body CloudZero accepts, else ``InvalidBody``."""
    try:
        payload = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise InvalidBody(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidBody("body must be a JSON object")
    if unknown := sorted(set(payload) - {"month", "operation", "data"}):
        raise InvalidBody(f"unexpected top-level keys: {unknown}")
    month, operation, rows = payload.get("month"), payload.get("operation"), payload.get("data")
    if not isinstance(month, str) or not _MONTH.fullmatch(month):
        raise InvalidBody(f"month must be 'YYYY-MM', got {month!r}")
    if operation not in OPERATIONS:
        raise InvalidBody(f"operation must be one of {list(OPERATIONS)}, got {operation!r}")
    if not isinstance(rows, list) or not rows:
        raise InvalidBody("data must be a non-empty list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidBody(f"data[{i}] is not an object")
        for key, value in row.items():
            if not isinstance(value, str):
                raise InvalidBody(
                    f"data[{i}][{key!r}] must be a string, got {type(value).__name__}"
                )
        if missing := [k for k in REQUIRED_ROW_KEYS if k not in row]:
            raise InvalidBody(f"data[{i}] lacks {missing}")
        hour, cost = row["time/usage_start"], row["cost/cost"]
        if (hour_month := _month_of_hour(hour)) is None:
            raise InvalidBody(f"data[{i}] time/usage_start {hour!r} is not a whole UTC hour")
        if hour_month != month:
            raise InvalidBody(f"data[{i}] time/usage_start {hour!r} is outside month {month}")
        if not _FIXED_POINT.fullmatch(cost):  # which also makes it a finite Decimal
            raise InvalidBody(f"data[{i}] cost/cost {cost!r} is not a fixed-point decimal")
    return month, operation, rows


def _month_of_hour(hour: str) -> str | None:
    """``YYYY-MM`` of a whole UTC hour written as CBF wants it, else None."""
    match = _HOUR.fullmatch(hour)
    try:
        return match.group(1) if match and datetime.strptime(hour, "%Y-%m-%dT%H:%M:%SZ") else None
    except ValueError:  # shaped right, but no such date or hour (02-30, 24:00)
        return None


class _Handler(FakeHandler[FakeAnyCost]):
    """The endpoint, on keep-alive connections like the client's single pooled one."""

    def setup(self) -> None:
        super().setup()
        self._flying = False  # this request counts as in flight
        self._concurrent = 0  # requests in flight when this one arrived, if more than itself

    def parse_request(self) -> bool:
        """Request line and headers are in: record the request and count it in flight."""
        if not super().parse_request():
            return False
        fake = self.server.fake
        self._record = ReceivedRequest(
            self.command, self.path, time.monotonic(), self.headers.get(IDEMPOTENCY_HEADER)
        )
        self._concurrent = 0
        if self.command == "POST" and fake._is_endpoint(self.path):
            self._flying = True
            in_flight = fake._fly(+1)
            self._concurrent = in_flight if in_flight > 1 else 0
        with fake._lock:
            fake._requests.append(self._record)
        return True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self._land()  # whatever happened, this request is no longer in flight

    def _land(self) -> None:
        if self._flying:
            self._flying = False
            self.server.fake._fly(-1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        if not self.server.fake._is_endpoint(self.path):
            return self._reject_unread(404, "Not Found")
        self._reject_unread(405, "Method Not Allowed", {"Allow": "POST"})

    do_PUT = do_PATCH = do_DELETE = do_GET

    def do_POST(self) -> None:  # noqa: N802
        fake, record = self.server.fake, self._record
        if not fake._is_endpoint(self.path):
            return self._reject_unread(404, "Not Found")
        if self._concurrent:
            self._violation(f"concurrent request: {self._concurrent} in flight")
            return self._reject_unread(429, "Too Many Requests", {"Retry-After": "1"})
        authorization = self.headers.get("Authorization")
        if authorization is None:
            return self._reject_unread(401, "Unauthorized: missing Authorization header")
        if authorization != fake.api_key:
            return self._reject_unread(403, "Forbidden: invalid API key")
        length = self._content_length()
        if length is None:
            return self._reject_unread(411, "Length Required")
        if length > fake.max_body_bytes:
            record.bytes = length
            return self._reject_unread(
                413, f"Request body is {length} bytes, above {fake.max_body_bytes}"
            )
        raw = self.rfile.read(length)
        record.bytes = len(raw)
        if len(raw) < length:  # the client went away mid-body
            return self._close_without_answer()
        if (key := record.idempotency_key) != hashlib.sha256(raw).hexdigest():
            problem = "missing" if key is None else f"{key!r} is not the body's SHA-256"
            self._violation(f"{IDEMPOTENCY_HEADER} {problem} ({len(raw)}-byte body)")
        try:
            month, operation, rows = validate_body(raw)
        except InvalidBody as exc:
            return self._send(400, {"message": str(exc)})
        record.month, record.operation, record.rows = month, operation, len(rows)
        record.hours = sorted({row["time/usage_start"] for row in rows})

        fault = fake._next_fault()
        record.fault = fault.describe() if fault else None
        if fault is not None and fault.kind == "slow":
            fake._stopping.wait(fault.seconds)  # still in flight while it waits
        if fault is None or fault.applied:
            record.drop_id, record.applied = fake._apply(
                record.idempotency_key, month, operation, rows
            )
        if fault is None or fault.kind == "slow":
            return self._send(200, {"drop_id": record.drop_id})
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._send(fault.code, {"message": f"injected {fault.code}"}, headers)
        if fault.kind == "hang":
            self._land()  # a held answer is not in flight: the client may retry meanwhile
            fake._stopping.wait(fault.seconds)
        self._close_without_answer()

    # --- answers ---

    def _violation(self, text: str) -> None:
        with self.server.fake._lock:
            self.server.fake._violations.append(text)

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _reject_unread(
        self, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer before reading the body: discard it (bounded) so keep-alive stays in step."""
        headers = dict(headers or {})
        length = self._content_length()
        if length is None or length > DISCARD_LIMIT:
            headers["Connection"] = "close"  # no safe way to skip this body: hang up after
        else:
            self.rfile.read(length)  # short if the client went away; nothing else to do then
        self._send(code, {"message": message}, headers)

    def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        # Landed and recorded before writing: a client may act as soon as it reads this.
        self._land()
        data = json.dumps(body).encode()
        self._record.status, self._record.message = code, body.get("message")
        self._record.finished_at = time.monotonic()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (its timeout) and closed the connection
            self.close_connection = True

    def _close_without_answer(self) -> None:
        """Hang up with no status line: the client sees a dropped connection, not a 200."""
        self._land()
        self._record.finished_at = time.monotonic()
        self.close_connection = True
        shutdown_socket(self.connection)
