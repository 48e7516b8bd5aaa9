"""``hourly_spend_schedule``: at minute 10, one run over the last few closed hours."""

import os
from datetime import datetime, timedelta, timezone

import dagster as dg

from assets.partitions import partition_key
from pipelines.jobs import hourly_spend_job, partition_range_tags

DEFAULT_LOOKBACK_HOURS = 3


def lookback_hours() -> int:
    value = os.getenv("SPEND_LOOKBACK_HOURS", str(DEFAULT_LOOKBACK_HOURS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"SPEND_LOOKBACK_HOURS must be a positive integer, got {value!r}")
    return int(value)


def lookback_window(now: datetime, hours: int) -> tuple[datetime, datetime]:
    """First and last hour of the ``hours`` closed hours before ``now`` (UTC)."""
    last = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=1
    )
    return last - timedelta(hours=hours - 1), last


@dg.schedule(
    job=hourly_spend_job,
    cron_schedule="10 * * * *",
    execution_timezone="UTC",
    description="Restates the last SPEND_LOOKBACK_HOURS closed hours in one run, so late rows land.",
)
def hourly_spend_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    first, last = lookback_window(context.scheduled_execution_time, lookback_hours())
    return dg.RunRequest(
        run_key=None,
        tags=partition_range_tags(partition_key(first), partition_key(last)),
    )
