"""The one partitioning of every asset: UTC hours from SPEND_START_DATE."""

import os
from datetime import datetime, timezone
from functools import partial

import dagster as dg

from resources.lake import hours_between

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def spend_start_date() -> str:
    """``SPEND_START_DATE`` (YYYY-MM-DD), else 1 January of the current UTC year."""
    value = os.getenv("SPEND_START_DATE") or f"{datetime.now(timezone.utc).year}-01-01"
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime(PARTITION_FORMAT)
    except ValueError:
        raise ValueError(f"SPEND_START_DATE must be YYYY-MM-DD, got {value!r}") from None


hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=spend_start_date(), timezone="UTC", fmt=PARTITION_FORMAT
)


# Every asset of the pipeline: hourly, and a backfill of any range is one run over it.
hourly_asset = partial(
    dg.asset, partitions_def=hourly_partitions, backfill_policy=dg.BackfillPolicy.single_run()
)


def partition_hours(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> list[datetime]:
    """The UTC hours of the partition range this run materialises or checks (one or many)."""
    window = context.op_execution_context.partition_time_window
    return hours_between(window.start, window.end)


def partition_key(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime(PARTITION_FORMAT)


def partition_hour(key: str) -> datetime:
    """The UTC hour a partition key names (the inverse of :func:`partition_key`)."""
    return datetime.strptime(key, PARTITION_FORMAT).replace(tzinfo=timezone.utc)
