"""Per-hour fingerprints of LiteLLM's spend logs, in its database and in the lake, and the
hours where they differ.

A fingerprint is what restating the hour would change in ``litellm_spend_logs``: the row
count, the exact spend and the latest ``"endTime"``. Spend is summed the way the lake keeps
each row's cost, the float8's shortest round-trip text rounded to 18 decimals (``round(
spend::text::numeric, 18)`` in PostgreSQL, ``CAST(CAST(spend AS VARCHAR) AS DECIMAL(38, 18))``
in DuckDB, the same values), so identical rows give identical fingerprints. A row added, a
spend corrected or a request re-logged with a later end changes the hour's fingerprint.

An hour without rows, or never materialised, has the empty fingerprint: an hour LiteLLM has
rows for but the lake never got differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa

from resources.duck import query_arrow
from resources.lake import LakeResource
from resources.litellm_db import SessionLimits, read_hour_fingerprints
from resources.raw_spend import MONEY, UTC_TS

SPEND_LOGS_ASSET = "litellm_spend_logs"
_SPEND_STEP = Decimal("1e-18")


@dataclass(frozen=True)
class HourFingerprint:
    """Row count, exact spend (18 decimals) and latest end time of one hour's spend logs."""

    rows: int = 0
    spend: Decimal = Decimal(0)
    last_end: datetime | None = None  # UTC

    def text(self) -> str:
        """``rows/spend/last_end``: the same text for the same fingerprint, on both sides."""
        spend = format(self.spend.quantize(_SPEND_STEP), "f")
        last_end = self.last_end.astimezone(timezone.utc).isoformat() if self.last_end else "-"
        return f"{self.rows}/{spend}/{last_end}"


EMPTY = HourFingerprint()


@dataclass(frozen=True)
class HourDifference:
    """An hour whose spend logs in LiteLLM's database differ from the lake's."""

    hour: datetime
    database: HourFingerprint
    lake: HourFingerprint

    @property
    def rows_gone(self) -> bool:
        """LiteLLM holds fewer rows than the lake: deleted there (retention cleanup, by hand)."""
        return self.database.rows < self.lake.rows

    def line(self) -> str:
        return f"{self.hour:%Y-%m-%dT%H}Z database {self.database.text()} lake {self.lake.text()}"


def _fingerprint(rows: int, spend: Decimal | str, last_end: datetime | None) -> HourFingerprint:
    if last_end is not None and last_end.tzinfo is None:  # "endTime" is UTC without a zone
        last_end = last_end.replace(tzinfo=timezone.utc)
    return HourFingerprint(rows, Decimal(spend).quantize(_SPEND_STEP), last_end)


def _utc_hour(hour: datetime) -> datetime:
    return (
        hour.replace(tzinfo=timezone.utc) if hour.tzinfo is None else hour.astimezone(timezone.utc)
    )


def fingerprints_by_hour(table: pa.Table) -> dict[datetime, HourFingerprint]:
    """``hour, row_count, spend, last_end_time`` rows (either side's) by UTC hour."""
    return {
        _utc_hour(r["hour"]): _fingerprint(r["row_count"], r["spend"], r["last_end_time"])
        for r in table.to_pylist()
    }


def database_fingerprints(
    database_url: str, start: datetime, end: datetime, limits: SessionLimits
) -> dict[datetime, HourFingerprint]:
    """LiteLLM's fingerprints of the hours of ``[start, end)`` that have rows."""
    return fingerprints_by_hour(read_hour_fingerprints(database_url, start, end, limits))


_LAKE_SQL = """
SELECT usage_hour AS hour, count(*) AS row_count, sum(cost) AS spend,
       max(end_time) AS last_end_time
FROM logs
GROUP BY usage_hour
"""
_LAKE_SCHEMA = pa.schema(
    [("hour", UTC_TS), ("row_count", pa.int64()), ("spend", MONEY), ("last_end_time", UTC_TS)]
)


def lake_fingerprints(
    lake: LakeResource, hours: Sequence[datetime]
) -> dict[datetime, HourFingerprint]:
    """The lake's fingerprints of ``hours`` that were materialised with rows.

    DuckDB reads three columns of the hour files, never a whole row.
    """
    written = lake.present_hours(SPEND_LOGS_ASSET, hours)
    if not written:
        return {}
    scan = lake.scan(SPEND_LOGS_ASSET, written)
    return fingerprints_by_hour(query_arrow(None, _LAKE_SQL, _LAKE_SCHEMA, logs=scan))


def differing_hours(
    hours: Iterable[datetime],
    database: dict[datetime, HourFingerprint],
    lake: dict[datetime, HourFingerprint],
) -> list[HourDifference]:
    """The hours, in order, whose two fingerprints differ (a missing one is ``EMPTY``)."""
    return [
        HourDifference(hour, database.get(hour, EMPTY), lake.get(hour, EMPTY))
        for hour in sorted(set(hours))
        if database.get(hour, EMPTY) != lake.get(hour, EMPTY)
    ]
