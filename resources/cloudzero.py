"""CloudZero AnyCost Stream: request packing (pure) and the resource that submits bodies.

Packing follows the contract in DESIGN.md ("CloudZero contract"):

* every body holds the rows of one UTC month;
* whole hours are packed into ``replace_hourly`` bodies, and an hour is never split over
  two ``replace_hourly`` bodies (CloudZero would delete the first part);
* an hour too big for one body is sent as one ``replace_hourly`` body followed by ``sum``
  continuation bodies that carry only that hour's remaining rows, in order;
* an hour with no rows (submitted before, empty now) is sent as one zero-cost row
  (:func:`empty_hour_row`) so that ``replace_hourly`` clears it;
* sizes are measured on the exact serialized bytes, which are also what is sent.

Serialization is compact JSON (``,`` and ``:`` separators), ASCII-only (``\\uXXXX``
escapes, so the byte count cannot grow when a server re-encodes), keys in a fixed order
(``month``, ``operation``, ``data``; row keys in CBF column order). The same rows give the
same bytes, and the idempotency key is the SHA-256 of those bytes.

This version only performs a dry run: the exact bodies and a manifest are written under
``<data_dir>/cloudzero/dry_run/<run_id>/``. The API key is never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg

from assets.cbf import CBF_COLUMNS, SERVICE, USAGE_UNITS, cost_total, format_cost, format_hour
from resources.lake import atomic_write

MAX_BODY_BYTES = 5_000_000  # CloudZero's limit on an uncompressed request body
BODY_SAFETY_MARGIN = 250_000  # headroom for any difference in how the server counts
DEFAULT_MAX_BODY_BYTES = MAX_BODY_BYTES - BODY_SAFETY_MARGIN

REPLACE_HOURLY = "replace_hourly"
SUM = "sum"
OPERATIONS = (REPLACE_HOURLY, SUM)
EMPTY_HOUR_RESOURCE_ID = "litellm/empty-hour"
CONNECTION_PLACEHOLDER = "<CLOUDZERO_CONNECTION_ID>"
DRY_RUN_DIR = Path("cloudzero") / "dry_run"
MANIFEST_FILE = "manifest.json"

REASON_NO_CREDENTIALS = "no credentials"
REASON_DRY_RUN_SET = "CLOUDZERO_DRY_RUN is set"
REASON_NOT_AVAILABLE = "live submission is not available in this version"

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_COLUMN_ORDER = {name: i for i, name in enumerate(CBF_COLUMNS)}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _canonical_row(row: Mapping[str, str]) -> dict[str, str]:
    """A copy of a CBF row with string values and keys in CBF order (unknown keys last)."""
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
    _bytes: bytes = field(init=False, repr=False, compare=False)

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
        rows = tuple(_canonical_row(r) for r in self.rows)
        stamps = {format_hour(h) for h in hours}
        stray = {r.get("time/usage_start") for r in rows} - stamps
        if stray:
            raise ValueError(
                f"rows for hour(s) {sorted(map(str, stray))} not listed in the body's hours"
            )
        object.__setattr__(self, "hours", hours)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "_bytes", _dumps(self.payload()).encode("ascii"))

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
        return hashlib.sha256(self._bytes).hexdigest()

    @property
    def cost_total(self) -> Decimal:
        return cost_total(list(self.rows))


def _envelope_bytes(month: str, operation: str) -> int:
    """Bytes of a body with an empty ``data`` list; each row adds its own bytes plus a comma."""
    return len(_dumps({"month": month, "operation": operation, "data": []}))


def _size(envelope: int, row_sizes: Sequence[int]) -> int:
    return envelope + sum(row_sizes) + max(len(row_sizes) - 1, 0)


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
    batch_sizes: list[int] = []

    def flush() -> None:
        if batch_hours:
            month = _month(batch_hours[0])
            bodies.append(Body(month, REPLACE_HOURLY, tuple(batch_hours), tuple(batch_rows)))
            batch_hours.clear()
            batch_rows.clear()
            batch_sizes.clear()

    for hour in sorted(by_hour):
        rows = by_hour[hour]
        month = _month(hour)
        if batch_hours and _month(batch_hours[0]) != month:
            flush()
        sizes = [len(_dumps(r)) for r in rows]
        replace_envelope = _envelope_bytes(month, REPLACE_HOURLY)
        if _size(replace_envelope, sizes) > max_body_bytes:
            flush()
            bodies.extend(_split_hour(hour, rows, sizes, max_body_bytes))
            continue
        if batch_hours and _size(replace_envelope, batch_sizes + sizes) > max_body_bytes:
            flush()
        batch_hours.append(hour)
        batch_rows.extend(rows)
        batch_sizes.extend(sizes)
    flush()

    for body in bodies:  # the arithmetic above must agree with the real bytes
        if body.size > max_body_bytes:
            raise AssertionError(f"packed body of {body.size} bytes exceeds {max_body_bytes}")
    return bodies


def _split_hour(
    hour: datetime, rows: list[dict[str, str]], sizes: list[int], max_body_bytes: int
) -> list[Body]:
    """One oversize hour: a ``replace_hourly`` body, then ``sum`` bodies with the rest."""
    month = _month(hour)
    bodies: list[Body] = []
    chunk: list[dict[str, str]] = []
    chunk_sizes: list[int] = []
    operation = REPLACE_HOURLY
    for row, size in zip(rows, sizes, strict=True):
        envelope = _envelope_bytes(month, operation)
        if _size(envelope, [size]) > max_body_bytes:
            raise ValueError(
                f"a single CBF row of hour {format_hour(hour)} ({size} bytes) does not fit in a "
                f"body of {max_body_bytes} bytes"
            )
        if chunk and _size(envelope, chunk_sizes + [size]) > max_body_bytes:
            bodies.append(Body(month, operation, (hour,), tuple(chunk)))
            chunk, chunk_sizes, operation = [], [], SUM
        chunk.append(row)
        chunk_sizes.append(size)
    bodies.append(Body(month, operation, (hour,), tuple(chunk)))
    return bodies


@dataclass(frozen=True)
class HourReport:
    """What was (or, in a dry run, would be) sent for one hour."""

    hour: datetime
    operations: tuple[str, ...]
    rows: int
    bytes: int  # the hour's share of the body bytes: its serialized rows
    cost_total: Decimal
    cleared: bool  # sent as the empty-hour row

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": format_hour(self.hour),
            "operations": list(self.operations),
            "rows": self.rows,
            "bytes": self.bytes,
            "cost_total": format_cost(self.cost_total),
            "cleared": self.cleared,
        }


@dataclass(frozen=True)
class SubmissionReport:
    """The outcome of :meth:`CloudZeroResource.submit`. ``submitted`` is False in a dry run."""

    mode: str
    reason: str
    run_id: str
    directory: Path | None
    manifest: Path | None
    files: tuple[Path, ...]
    bodies: int
    total_bytes: int
    cost_total: Decimal
    hours: tuple[HourReport, ...]

    @property
    def submitted(self) -> bool:
        return self.mode == "live"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "submitted": self.submitted,
            "run_id": self.run_id,
            "directory": str(self.directory) if self.directory else None,
            "bodies": self.bodies,
            "total_bytes": self.total_bytes,
            "cost_total": format_cost(self.cost_total),
            "hours": [h.as_dict() for h in self.hours],
        }

    def metadata(self) -> dict[str, Any]:
        """Dagster materialization metadata: says plainly whether anything was sent."""
        lines = ["| hour | operations | rows | bytes | cost |", "|---|---|---|---|---|"]
        lines += [
            f"| {format_hour(h.hour)} | {', '.join(h.operations)}"
            f"{' (cleared)' if h.cleared else ''} | {h.rows} | {h.bytes}"
            f" | {format_cost(h.cost_total)} |"
            for h in self.hours
        ]
        meta: dict[str, Any] = {
            "mode": self.mode,
            "reason": self.reason,
            "submitted": self.submitted,
            "dagster/row_count": sum(h.rows for h in self.hours),
            "bodies": self.bodies,
            "bytes": self.total_bytes,
            "cost_total": dg.MetadataValue.text(format_cost(self.cost_total)),
            "hours": dg.MetadataValue.md("\n".join(lines)),
        }
        if self.directory is not None:
            meta["directory"] = dg.MetadataValue.path(str(self.directory))
        if self.manifest is not None:
            meta["manifest"] = dg.MetadataValue.path(str(self.manifest))
        return meta


def hour_reports(bodies: Sequence[Body]) -> tuple[HourReport, ...]:
    """Per-hour operations, rows, bytes and cost over a list of bodies."""
    operations: dict[datetime, list[str]] = {}
    rows: dict[datetime, list[dict[str, str]]] = {}
    for body in bodies:
        for hour in body.hours:
            stamp = format_hour(hour)
            operations.setdefault(hour, []).append(body.operation)
            rows.setdefault(hour, []).extend(r for r in body.rows if r["time/usage_start"] == stamp)
    return tuple(
        HourReport(
            hour=hour,
            operations=tuple(operations[hour]),
            rows=len(rows[hour]),
            bytes=sum(len(_dumps(r)) for r in rows[hour]),
            cost_total=cost_total(rows[hour]),
            cleared=any(r.get("resource/id") == EMPTY_HOUR_RESOURCE_ID for r in rows[hour]),
        )
        for hour in sorted(operations)
    )


class CloudZeroResource(dg.ConfigurableResource):
    """CloudZero AnyCost Stream connection. This version only dry-runs: it writes the exact
    request bodies to disk and reports them as a dry run, never as a submission."""

    api_key: str | None = None
    connection_id: str | None = None
    api_url: str = "https://api.cloudzero.com"
    timezone: str = "UTC"
    dry_run: bool = True
    data_dir: str = "./data"

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key) and bool(self.connection_id)

    @property
    def mode(self) -> str:
        return "dry_run"

    @property
    def reason(self) -> str:
        """Why bodies are not sent: the first of missing credentials, the dry-run switch,
        and the fact that this version has no live client."""
        if not self.has_credentials:
            return REASON_NO_CREDENTIALS
        if self.dry_run:
            return REASON_DRY_RUN_SET
        return REASON_NOT_AVAILABLE

    @property
    def billing_drops_url(self) -> str:
        """Where bodies are POSTed (the connection id is a placeholder until configured)."""
        connection = CONNECTION_PLACEHOLDER
        if self.connection_id:
            connection = quote(self.connection_id, safe="")
        base = self.api_url.rstrip("/")
        return f"{base}/v2/connections/billing/anycost/{connection}/billing_drops"

    def dry_run_dir(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} is not a safe directory name")
        return Path(self.data_dir) / DRY_RUN_DIR / run_id

    def submit(self, bodies: Sequence[Body], run_id: str) -> SubmissionReport:
        """Dry run: write each body's exact bytes and a manifest under
        ``<data_dir>/cloudzero/dry_run/<run_id>/``; nothing is sent."""
        directory = self.dry_run_dir(run_id)
        url = self.billing_drops_url
        files: list[Path] = []
        entries: list[dict[str, Any]] = []
        for n, body in enumerate(bodies, start=1):
            path = directory / f"body-{n:04d}.json"
            data = body.to_bytes()
            atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
            files.append(path)
            entries.append(
                {
                    "file": path.name,
                    "month": body.month,
                    "operation": body.operation,
                    "hours": [format_hour(h) for h in body.hours],
                    "rows": len(body.rows),
                    "bytes": body.size,
                    "cost_total": format_cost(body.cost_total),
                    "idempotency_key": body.idempotency_key,
                    "url": url,
                }
            )
        if directory.exists():  # a re-run of the same run id with fewer bodies
            for stale in directory.glob("body-*.json"):
                if stale not in files:
                    stale.unlink()
        hours = hour_reports(bodies)
        total = cost_total([r for b in bodies for r in b.rows])
        manifest = {
            "mode": self.mode,
            "reason": self.reason,
            "submitted": False,
            "run_id": run_id,
            "api_url": self.api_url,
            "connection_id": self.connection_id,
            "timezone": self.timezone,
            "bodies": entries,
            "hours": [h.as_dict() for h in hours],
        }
        manifest_path = directory / MANIFEST_FILE
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        atomic_write(manifest_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return SubmissionReport(
            mode=self.mode,
            reason=self.reason,
            run_id=run_id,
            directory=directory,
            manifest=manifest_path,
            files=tuple(files),
            bodies=len(bodies),
            total_bytes=sum(b.size for b in bodies),
            cost_total=total,
            hours=hours,
        )
