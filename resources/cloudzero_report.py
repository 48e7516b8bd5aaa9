"""What a CloudZero submission did, hour by hour and month by month, for Dagster's UI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg

from resources.cbf import cost_total, exact_sum, format_cost, format_hour
from resources.cloudzero_bodies import EMPTY_HOUR_RESOURCE_ID, Body

LIVE, DRY_RUN = "live", "dry_run"
# CloudZero's limits per month and connection (the resource's defaults; tests lower them).
MONTH_ROW_LIMIT = 1_000_000
MONTH_BYTE_LIMIT = 70_000_000
MONTH_WARN_SHARE = Decimal("0.8")  # the warning check speaks up from here
OVER_MONTHLY_LIMIT = "over monthly limit"


@dataclass(frozen=True)
class HourReport:
    """What happened to one hour: its plan, and what was (or would be) sent for it."""

    hour: datetime
    status: str  # sent, cleared, dry run, unchanged, nothing to send, invalid, failed, not sent
    operations: tuple[str, ...] = ()
    bodies: int = 0
    rows: int = 0
    bytes: int = 0  # the hour's share of the body bytes: its serialized rows
    cost_total: Decimal = Decimal(0)
    attempts: int = 0
    drop_ids: tuple[str | None, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": format_hour(self.hour),
            "status": self.status,
            "operations": list(self.operations),
            "bodies": self.bodies,
            "rows": self.rows,
            "bytes": self.bytes,
            "cost_total": format_cost(self.cost_total),
            "attempts": self.attempts,
            "drop_ids": list(self.drop_ids),
            "note": self.note,
        }


@dataclass(frozen=True)
class MonthUsage:
    """Rows and row bytes (as JSON, as sent) a month holds in CloudZero once a submission
    lands, against CloudZero's limits, and the tag with the most distinct values."""

    month: str
    rows: int
    bytes: int
    row_limit: int = MONTH_ROW_LIMIT
    byte_limit: int = MONTH_BYTE_LIMIT
    widest_tag: tuple[str, int] | None = None  # (dimension, distinct values) of the rows seen

    @property
    def share(self) -> Decimal:
        """The larger of rows and bytes as a share of their limit."""
        return max(Decimal(self.rows) / self.row_limit, Decimal(self.bytes) / self.byte_limit)

    @property
    def over(self) -> bool:
        return self.rows > self.row_limit or self.bytes > self.byte_limit

    def describe(self) -> str:
        text = (
            f"{self.month} would hold {self.rows:,} rows and {self.bytes:,} bytes in CloudZero; "
            f"the limit is {self.row_limit:,} rows and {self.byte_limit:,} bytes per month"
        )
        if self.widest_tag:
            name, count = self.widest_tag
            text += f"; the dimension with the most distinct values is {name} ({count:,})"
        return text

    @property
    def error(self) -> str | None:
        if not self.over:
            return None
        return (
            f"{self.describe()}. Nothing of {self.month} was sent: make resources coarser "
            "(CLOUDZERO_RESOURCE_DIMENSIONS without that dimension) and restate the month"
        )


@dataclass(frozen=True)
class SubmissionReport:
    """The outcome of :meth:`CloudZeroResource.submit`. ``submitted`` is False in a dry run."""

    mode: str
    reason: str
    run_id: str
    requests: int
    total_bytes: int
    hours: tuple[HourReport, ...]
    directory: str | None = None  # where a dry run wrote (URLs)
    manifest: str | None = None
    files: tuple[str, ...] = ()
    error: str | None = None
    months: tuple[MonthUsage, ...] = ()

    @property
    def submitted(self) -> bool:
        return self.mode == LIVE and any(h.status in ("sent", "cleared") for h in self.hours)

    @property
    def failed_hours(self) -> tuple[HourReport, ...]:
        failed = ("invalid", "failed", "not sent", OVER_MONTHLY_LIMIT)
        return tuple(h for h in self.hours if h.status in failed)

    @property
    def cost_total(self) -> Decimal:
        return exact_sum(h.cost_total for h in self.hours if h.operations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "submitted": self.submitted,
            "run_id": self.run_id,
            "requests": self.requests,
            "total_bytes": self.total_bytes,
            "cost_total": format_cost(self.cost_total),
            "error": self.error,
            "hours": [h.as_dict() for h in self.hours],
        }

    def metadata(self) -> dict[str, Any]:
        """Dagster materialization metadata: says plainly whether anything was sent."""
        lines = [
            "| hour | status | operations | rows | bytes | cost | attempts | drop id | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {format_hour(h.hour)} | {h.status} | {', '.join(h.operations)} | {h.rows}"
            f" | {h.bytes} | {format_cost(h.cost_total)} | {h.attempts}"
            f" | {', '.join(d or '' for d in h.drop_ids)} | {h.note.replace('|', '/')} |"
            for h in self.hours
        ]
        counts: dict[str, int] = {}
        for h in self.hours:
            counts[h.status] = counts.get(h.status, 0) + 1
        meta: dict[str, Any] = {
            "mode": self.mode,
            "reason": self.reason,
            "submitted": self.submitted,
            "dagster/row_count": sum(h.rows for h in self.hours if h.operations),
            "requests": self.requests,
            "bytes": self.total_bytes,
            "cost_total": dg.MetadataValue.text(format_cost(self.cost_total)),
            **{f"hours/{status}": n for status, n in sorted(counts.items())},
            "hours": dg.MetadataValue.md("\n".join(lines)),
        }
        for month in self.months:
            meta[f"month/{month.month}/rows"] = month.rows
            meta[f"month/{month.month}/bytes"] = month.bytes
        errors = [m.error for m in self.months if m.error]
        if errors:
            meta["month_limit_errors"] = dg.MetadataValue.text("; ".join(errors))
        if self.error:
            meta["error"] = dg.MetadataValue.text(self.error)
        if self.directory is not None:
            meta["directory"] = dg.MetadataValue.path(self.directory)
        if self.manifest is not None:
            meta["manifest"] = dg.MetadataValue.path(self.manifest)
        return meta


def hour_reports(
    bodies: Sequence[Body], status: Callable[[datetime], str], **extra: Any
) -> list[HourReport]:
    """Operations, rows, bytes and cost of every hour the bodies carry (one pass over rows)."""
    stamps = {format_hour(h): h for b in bodies for h in b.hours}
    rows: dict[datetime, list[dict[str, str]]] = {h: [] for h in stamps.values()}
    sizes = dict.fromkeys(stamps.values(), 0)
    operations: dict[datetime, list[str]] = {h: [] for h in stamps.values()}
    for body in bodies:
        for hour in body.hours:
            operations[hour].append(body.operation)
        for row, text in zip(body.rows, body.row_texts, strict=True):
            hour = stamps[row["time/usage_start"]]
            sizes[hour] += len(text)
            if row["resource/id"] != EMPTY_HOUR_RESOURCE_ID:
                rows[hour].append(row)
    return [
        HourReport(
            hour=hour,
            status=status(hour),
            operations=tuple(operations[hour]),
            bodies=len(operations[hour]),
            rows=len(rows[hour]),
            bytes=sizes[hour],
            cost_total=cost_total(rows[hour]),
            **extra,
        )
        for hour in sorted(rows)
    ]
