"""AnyCost Stream request bodies: how CBF rows are packed into requests (pure, no I/O).

Packing follows the contract in DESIGN.md ("CloudZero contract"):

* every body holds the rows of one UTC month;
* whole hours are packed into ``replace_hourly`` bodies, and an hour is never split over
  two ``replace_hourly`` bodies (CloudZero would delete the first part);
* an hour too big for one body is sent as one ``replace_hourly`` body followed by ``sum``
  continuation bodies that carry only that hour's remaining rows, in order
  (:func:`delivery_units` groups them; the sender restarts such an hour from its
  ``replace_hourly`` body if a continuation fails);
* an hour with no rows (submitted before, empty now) is sent as one zero-cost row
  (:func:`empty_hour_row`) so that ``replace_hourly`` clears it;
* sizes are measured on the exact serialized bytes, which are also what is sent.

Serialization is compact JSON (``,`` and ``:`` separators), ASCII-only (``\\uXXXX``
escapes, so the byte count cannot grow when a server re-encodes), keys in a fixed order
(``month``, ``operation``, ``data``; row keys in CBF column order). The same rows give the
same bytes, and the idempotency key is the SHA-256 of those bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from resources.cbf import BASE_COLUMNS, SERVICE, USAGE_UNITS, cost_total, format_hour

MAX_BODY_BYTES = 5_000_000  # CloudZero's limit on an uncompressed request body
BODY_SAFETY_MARGIN = 250_000  # headroom for any difference in how the server counts
DEFAULT_MAX_BODY_BYTES = MAX_BODY_BYTES - BODY_SAFETY_MARGIN

REPLACE_HOURLY = "replace_hourly"
SUM = "sum"
OPERATIONS = (REPLACE_HOURLY, SUM)
EMPTY_HOUR_RESOURCE_ID = "litellm/empty-hour"

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_COLUMN_ORDER = {name: i for i, name in enumerate(BASE_COLUMNS)}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _canonical_row(row: Mapping[str, str]) -> dict[str, str]:
    """A copy of a CBF row with string values, the base columns first in CBF order, then
    the rest (tags) by name, so the same row always makes the same bytes."""
    for key, value in row.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"CBF rows hold strings only; {key!r} is {type(value).__name__}")
    keys = sorted(row, key=lambda k: (_COLUMN_ORDER.get(k, len(_COLUMN_ORDER)), k))
    return {k: row[k] for k in keys}


def _utc_hour(hour: datetime) -> datetime:
    format_hour(hour)  # rejects naive and non-hour-aligned datetimes
    return hour.astimezone(timezone.utc)


def _month(hour: datetime) -> str:
    return f"{hour.astimezone(timezone.utc):%Y-%m}"


def empty_hour_row(hour: datetime) -> dict[str, str]:
    """The zero-cost row that stands for an hour with no spend, so ``replace_hourly`` clears it.

    It carries no tag columns: the placeholder resource belongs to no department.
    """
    return {
        "time/usage_start": format_hour(hour),
        "lineitem/type": "Usage",
        "lineitem/description": "LiteLLM spend: no usage this hour",
        "resource/service": SERVICE,
        "resource/id": EMPTY_HOUR_RESOURCE_ID,
        "usage/amount": "0",
        "usage/units": USAGE_UNITS,
        "cost/cost": "0",
    }


@dataclass(frozen=True)
class Body:
    """One AnyCost Stream request body: rows of one month, sent with one operation."""

    month: str
    operation: str
    hours: tuple[datetime, ...]
    rows: tuple[dict[str, str], ...]
    # The rows' JSON, when the caller already made it from canonical rows (pack_bodies).
    row_texts: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _bytes: bytes = field(init=False, repr=False, compare=False)
    _key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _MONTH.match(self.month):
            raise ValueError(f"month must be YYYY-MM, got {self.month!r}")
        if self.operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {OPERATIONS}, got {self.operation!r}")
        if not self.rows:
            raise ValueError("a body needs at least one row (use empty_hour_row for an empty hour)")
        hours = tuple(_utc_hour(h) for h in self.hours)
        if any(_month(h) != self.month for h in hours):
            raise ValueError(f"every hour of a {self.month} body must be in {self.month}")
        if len(self.row_texts) == len(self.rows):
            rows, texts = tuple(self.rows), tuple(self.row_texts)
        else:
            rows = tuple(_canonical_row(r) for r in self.rows)
            texts = tuple(dumps(r) for r in rows)
        stamps = {format_hour(h) for h in hours}
        stray = {r.get("time/usage_start") for r in rows} - stamps
        if stray:
            raise ValueError(
                f"rows for hour(s) {sorted(map(str, stray))} not listed in the body's hours"
            )
        object.__setattr__(self, "hours", hours)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "row_texts", texts)
        head = dumps({"month": self.month, "operation": self.operation})[:-1]
        data = f'{head},"data":[{",".join(texts)}]}}'
        object.__setattr__(self, "_bytes", data.encode("ascii"))
        object.__setattr__(self, "_key", hashlib.sha256(self._bytes).hexdigest())

    def payload(self) -> dict[str, Any]:
        data = [dict(r) for r in self.rows]
        return {"month": self.month, "operation": self.operation, "data": data}

    def to_bytes(self) -> bytes:
        """The exact request body (compact, deterministic JSON)."""
        return self._bytes

    @property
    def size(self) -> int:
        return len(self._bytes)

    @property
    def idempotency_key(self) -> str:
        """SHA-256 (hex) of :meth:`to_bytes`: equal bodies, equal keys."""
        return self._key

    @property
    def cost_total(self) -> Decimal:
        return cost_total(list(self.rows))


def _envelope_bytes(month: str, operation: str) -> int:
    """Bytes of a body with an empty ``data`` list; each row adds its own bytes plus a comma."""
    return len(dumps({"month": month, "operation": operation, "data": []}))


def pack_bodies(
    hours: Mapping[datetime, Sequence[Mapping[str, str]]],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> list[Body]:
    """Pack hours of CBF rows into AnyCost request bodies (see the module docstring).

    ``hours`` maps each UTC hour to send onto its complete CBF rows (an empty list means
    "clear this hour"). Bodies come back in the order they must be sent: by month, then
    hour; an oversize hour's ``sum`` continuations directly follow its ``replace_hourly``.
    """
    by_hour: dict[datetime, list[dict[str, str]]] = {}
    for hour, rows in hours.items():
        utc = _utc_hour(hour)
        stamp = format_hour(utc)
        canonical = [_canonical_row(r) for r in rows] or [empty_hour_row(utc)]
        for row in canonical:
            if row.get("time/usage_start") != stamp:
                raise ValueError(
                    f"row filed under {stamp} has time/usage_start {row.get('time/usage_start')!r}"
                )
        by_hour[utc] = canonical

    bodies: list[Body] = []
    batch_hours: list[datetime] = []
    batch_rows: list[dict[str, str]] = []
    batch_texts: list[str] = []

    def flush() -> None:
        if batch_hours:
            month = _month(batch_hours[0])
            rows, texts = tuple(batch_rows), tuple(batch_texts)
            bodies.append(Body(month, REPLACE_HOURLY, tuple(batch_hours), rows, texts))
            batch_hours.clear()
            batch_rows.clear()
            batch_texts.clear()

    batch_bytes = 0  # the batch's rows and their separating commas
    for hour in sorted(by_hour):
        rows = by_hour[hour]
        month = _month(hour)
        if batch_hours and _month(batch_hours[0]) != month:
            flush()
        texts = [dumps(r) for r in rows]
        hour_bytes = sum(map(len, texts)) + len(texts) - 1
        envelope = _envelope_bytes(month, REPLACE_HOURLY)
        if envelope + hour_bytes > max_body_bytes:
            flush()
            bodies.extend(_split_hour(hour, rows, texts, max_body_bytes))
            continue
        if batch_hours and envelope + batch_bytes + 1 + hour_bytes > max_body_bytes:
            flush()
        batch_bytes = hour_bytes if not batch_hours else batch_bytes + 1 + hour_bytes
        batch_hours.append(hour)
        batch_rows.extend(rows)
        batch_texts.extend(texts)
    flush()

    for body in bodies:  # the arithmetic above must agree with the real bytes
        if body.size > max_body_bytes:
            raise AssertionError(f"packed body of {body.size} bytes exceeds {max_body_bytes}")
    return bodies


def _split_hour(
    hour: datetime, rows: list[dict[str, str]], texts: list[str], max_body_bytes: int
) -> list[Body]:
    """One oversize hour: a ``replace_hourly`` body, then ``sum`` bodies with the rest."""
    month = _month(hour)
    bodies: list[Body] = []
    chunk: list[dict[str, str]] = []
    chunk_texts: list[str] = []
    chunk_bytes, operation = 0, REPLACE_HOURLY
    for row, text in zip(rows, texts, strict=True):
        envelope = _envelope_bytes(month, operation)
        if envelope + len(text) > max_body_bytes:
            raise ValueError(
                f"a single CBF row of hour {format_hour(hour)} ({len(text)} bytes) does not fit "
                f"in a body of {max_body_bytes} bytes"
            )
        if chunk and envelope + chunk_bytes + 1 + len(text) > max_body_bytes:
            bodies.append(Body(month, operation, (hour,), tuple(chunk), tuple(chunk_texts)))
            chunk, chunk_texts, operation = [], [], SUM
        chunk_bytes = len(text) if not chunk else chunk_bytes + 1 + len(text)
        chunk.append(row)
        chunk_texts.append(text)
    bodies.append(Body(month, operation, (hour,), tuple(chunk), tuple(chunk_texts)))
    return bodies


def delivery_units(bodies: Sequence[Body]) -> list[list[Body]]:
    """Bodies grouped into what must be delivered together, in order: a ``replace_hourly``
    body, followed, for an oversize hour, by that hour's ``sum`` continuations."""
    units: list[list[Body]] = []
    for body in bodies:
        if body.operation == SUM:
            if not units or units[-1][0].hours != body.hours:
                raise ValueError("a sum body must follow its own hour's replace_hourly body")
            units[-1].append(body)
        else:
            units.append([body])
    return units


def row_bytes(rows: Sequence[Mapping[str, str]]) -> int:
    """The bytes these rows take in request bodies (their JSON, without separators): what
    CloudZero counts against a month's byte limit."""
    return sum(len(dumps(_canonical_row(r))) for r in rows)


def rows_by_hour(bodies: Sequence[Body]) -> dict[datetime, list[dict[str, str]]]:
    """Every row of the bodies, filed under its hour (in body order)."""
    rows: dict[datetime, list[dict[str, str]]] = {h: [] for b in bodies for h in b.hours}
    stamps = {format_hour(h): h for h in rows}
    for body in bodies:
        for row in body.rows:
            rows[stamps[row["time/usage_start"]]].append(row)
    return rows
