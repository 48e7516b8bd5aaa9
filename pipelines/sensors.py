"""The sensors: ``cloudzero_cbf_sensor`` submits the hours whose CBF file changed since
CloudZero got it; ``late_landing_sensor`` restates hours that received late landings.

``cloudzero_cbf_sensor`` reads every ``cloudzero_cbf`` materialization after its cursor (a
storage id), not only the latest one (as ``@asset_sensor`` would), so a backfill's hundreds
of partition events are all seen. For each hour touched it compares the CBF file's SHA-256
with the hour's receipt; hours that CloudZero already holds byte for byte are dropped.
The rest are grouped into contiguous ranges, one ``cloudzero_submit_job`` run each.
A run key names the range and a digest of each hour's (file hash, receipt) pair, so the
same change is requested once however often the hour is re-materialised unchanged, and a
restatement (new hash) always gets a new run. A change whose run failed is requested again
(the key gains the number of failed runs) on the hour's next materialization.

``late_landing_sensor`` keeps a watermark over landing-file modification times. Hours that
got a new file and lie before the hourly schedule's look-back window are re-materialised
by ``hourly_spend_job`` (one run per contiguous range); their new CBF files then reach
CloudZero through ``cloudzero_cbf_sensor``.

``spend_logs_reconciliation_sensor`` finds rows that reached LiteLLM's database after the
look-back window (a proxy replaying its queue, a fix by hand), which leave no landing file:
it compares per-hour fingerprints of the database with the lake's ``litellm_spend_logs``
over the last ``SPEND_RECONCILE_DAYS`` days and restates the hours that differ, one run per
contiguous range. Its run key carries both fingerprints of every hour, so one difference is
requested once, and a new one (the database changed again) gets a new run. It keeps no
cursor: every tick compares afresh, with one query of LiteLLM's table.

``source_freshness_sensor`` requests no run: every few minutes it evaluates the check
``sources_answering`` of ``cloudzero_submission`` (receiver heartbeats, the spend-log reads the
runs recorded) and records the result, so the check fails while a source is silent even
when no run happens, and passes as quiet when the sources answer but there is no traffic.
"""

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import dagster as dg

from assets.freshness import sources_verdict
from assets.partitions import hourly_partitions, partition_hour, partition_key
from pipelines.jobs import cloudzero_submit_job, hourly_spend_job, range_run_request
from pipelines.schedules import lookback_hours, lookback_window
from resources.cbf import format_hour, load_cbf_hours
from resources.cloudzero import CloudZeroResource
from resources.cloudzero_receipts import Action, plan_action
from resources.lake import HOUR, LakeResource, hours_between
from resources.landing import LandingZoneResource
from resources.litellm import LiteLLMSpendLogsResource
from resources.spend_log_fingerprints import HourDifference, differing_hours, lake_fingerprints
from resources.storage import Storage

T = TypeVar("T")
CBF_ASSET = dg.AssetKey("cloudzero_cbf")
CHANGE_TAG = "cloudzero/change"
PAGE_SIZE = 1000
MAX_PAGES = 50  # events read per tick; the cursor carries on from there next tick
UNFINISHED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class HourChange:
    """An hour whose CBF file differs from what its receipt says CloudZero holds."""

    hour: datetime
    cbf_sha256: str
    receipt: str  # the receipt's file hash, its state when it has none, or "none"

    def line(self) -> str:
        return f"{format_hour(self.hour)} {self.cbf_sha256} {self.receipt}"


def changed_hours(
    hours: Iterable[datetime], storage: Storage, cloudzero: CloudZeroResource
) -> list[HourChange]:
    """The hours among ``hours`` that a submission would send or clear, in order."""
    store, changes = cloudzero.receipts(), []
    # An hour whose file was removed since it was materialised has nothing to send.
    for hour, cbf in sorted(load_cbf_hours(storage, sorted(set(hours))).items()):
        receipt = store.read(hour)
        if plan_action(bool(cbf.rows), cbf.sha256, receipt, force=False) in (
            Action.SEND,
            Action.CLEAR,
        ):
            marker = "none" if receipt is None else (receipt.cbf_sha256 or receipt.state)
            changes.append(HourChange(hour, cbf.sha256, marker))
    return changes


def contiguous(items: Iterable[T], hour: Callable[[T], datetime]) -> list[list[T]]:
    """Items sorted by hour, split wherever an hour is skipped."""
    runs: list[list[T]] = []
    for item in sorted(items, key=hour):
        if runs and hour(item) - hour(runs[-1][-1]) == timedelta(hours=1):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _hour_of(change: HourChange) -> datetime:
    return change.hour


def change_key(changes: list[HourChange]) -> str:
    """``<first>..<last>:<digest of every hour's file hash and receipt>``."""
    digest = hashlib.sha256("\n".join(c.line() for c in changes).encode()).hexdigest()
    return f"{partition_key(changes[0].hour)}..{partition_key(changes[-1].hour)}:{digest[:32]}"


def submission_requests(
    changes: list[HourChange], failed_runs: dict[str, int] | None = None
) -> list[dg.RunRequest]:
    """One run request per contiguous range of changed hours."""
    requests = []
    for group in contiguous(changes, _hour_of):
        key = change_key(group)
        failures = (failed_runs or {}).get(key, 0)
        run_key = f"{key}:retry-{failures}" if failures else key
        requests.append(
            range_run_request(group[0].hour, group[-1].hour, run_key, **{CHANGE_TAG: key})
        )
    return requests


def _failed_runs(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, int]:
    counts = {}
    for key in keys:
        runs = instance.get_runs(dg.RunsFilter(tags={CHANGE_TAG: key}, statuses=UNFINISHED))
        if runs:
            counts[key] = len(runs)
    return counts


@dg.sensor(
    job=cloudzero_submit_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests cloudzero_submit_job for the hours whose CBF file changed "
    "(content hash vs. receipt), one run per contiguous range.",
)
def cloudzero_cbf_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, cloudzero: CloudZeroResource
) -> dg.SensorResult:
    cursor = int(context.cursor) if context.cursor else 0
    hours: set[datetime] = set()
    for _ in range(MAX_PAGES):
        page = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=CBF_ASSET, after_storage_id=cursor),
            limit=PAGE_SIZE,
            ascending=True,
        )
        for record in page.records:
            cursor = max(cursor, record.storage_id)
            if record.partition_key:
                hours.add(partition_hour(record.partition_key))
        if not page.has_more:
            break
    changes = changed_hours(hours, lake.storage, cloudzero)
    keys = [change_key(group) for group in contiguous(changes, _hour_of)]
    requests = submission_requests(changes, _failed_runs(context.instance, keys))
    if hours:
        context.log.info(
            f"{len(hours)} CBF hours materialised, {len(changes)} changed: "
            f"{len(requests)} submission run(s) requested"
        )
    return dg.SensorResult(run_requests=requests, cursor=str(cursor))


# --- late landings ---------------------------------------------------------------------

SETTLE_SECONDS = 60  # a landing file older than this is complete (written, then renamed)


def late_hour_requests(
    hours: Iterable[datetime], now: datetime, lookback: int, watermark_ns: int
) -> list[dg.RunRequest]:
    """One ``hourly_spend_job`` run per contiguous range of hours that got new landings
    but lie before the schedule's look-back window (which restates the rest anyway)."""
    first_restated, _ = lookback_window(now, lookback)
    late = [h for h in hours if h < first_restated]
    return [
        range_run_request(
            group[0],
            group[-1],
            f"late:{partition_key(group[0])}..{partition_key(group[-1])}:{watermark_ns}",
        )
        for group in contiguous(late, lambda hour: hour)
    ]


@dg.sensor(
    job=hourly_spend_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materialises hours older than the schedule's look-back window that "
    "received new landing files (late webhook deliveries), one run per contiguous range.",
)
def late_landing_sensor(
    context: dg.SensorEvaluationContext, landing: LandingZoneResource
) -> dg.SensorResult:
    now_ns = time.time_ns()
    until_ns = now_ns - SETTLE_SECONDS * 1_000_000_000
    # First tick: start from now rather than from the beginning of the landing zone.
    since_ns = int(context.cursor) if context.cursor else until_ns
    now = datetime.fromtimestamp(now_ns / 1e9, timezone.utc)
    first = partition_hour(hourly_partitions.get_first_partition_key())
    watched = late_data_hours(now, reconcile_days(), lookback_hours(), first)
    hours = landing.zone().hours_landed_between(watched, since_ns, until_ns)
    requests = late_hour_requests(hours, now, lookback_hours(), until_ns)
    if requests:
        context.log.info(f"late landings in {len(hours)} hours: {len(requests)} run(s) requested")
    return dg.SensorResult(run_requests=requests, cursor=str(max(since_ns, until_ns)))


# --- reconciliation with LiteLLM's database ----------------------------------------------

DEFAULT_RECONCILE_DAYS = 7
# Rows this late are already hours late; the query reads every row of the days compared.
RECONCILE_INTERVAL_S = 900
NO_DATABASE = (
    "LITELLM_DATABASE_URL is not set: reconciliation compares LiteLLM's database with the "
    "lake, and only the database can be asked for per-hour fingerprints"
)


def reconcile_days() -> int:
    value = os.getenv("SPEND_RECONCILE_DAYS", str(DEFAULT_RECONCILE_DAYS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"SPEND_RECONCILE_DAYS must be a positive integer, got {value!r}")
    return int(value)


def late_data_hours(now: datetime, days: int, lookback: int, first: datetime) -> list[datetime]:
    """The hours the late-data sensors watch: the last ``days`` days before the schedule's
    look-back window (which restates the rest anyway), none before the first partition
    ``first``. A tick looks at these hours only, so its cost follows the window, not the
    history."""
    first_restated, last_restated = lookback_window(now, lookback)
    start = max(last_restated + HOUR - timedelta(days=days), first)
    return hours_between(start, first_restated) if start < first_restated else []


def reconciliation_requests(differences: list[HourDifference]) -> list[dg.RunRequest]:
    """One ``hourly_spend_job`` run per contiguous range of differing hours, keyed by the
    range and a digest of every hour's two fingerprints."""
    requests = []
    for group in contiguous(differences, lambda difference: difference.hour):
        digest = hashlib.sha256("\n".join(d.line() for d in group).encode()).hexdigest()
        first, last = partition_key(group[0].hour), partition_key(group[-1].hour)
        requests.append(
            range_run_request(
                group[0].hour, group[-1].hour, f"reconcile:{first}..{last}:{digest[:32]}"
            )
        )
    return requests


@dg.sensor(
    job=hourly_spend_job,
    minimum_interval_seconds=RECONCILE_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Compares per-hour fingerprints (rows, exact spend, latest endTime) of LiteLLM's "
    "database with litellm_spend_logs over the last SPEND_RECONCILE_DAYS days before the "
    "schedule's look-back window; restates the hours that differ, one run per contiguous range.",
)
def spend_logs_reconciliation_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, litellm: LiteLLMSpendLogsResource
) -> dg.SensorResult:
    if litellm.source != "database":
        return dg.SensorResult(skip_reason=NO_DATABASE)
    now = datetime.now(timezone.utc)
    hours = late_data_hours(now, reconcile_days(), lookback_hours(), hourly_partitions.start)
    if not hours:
        return dg.SensorResult(skip_reason="no hour before the schedule's look-back window yet")
    database = litellm.hour_fingerprints(hours[0], hours[-1] + HOUR)
    differences = differing_hours(hours, database, lake_fingerprints(lake, hours))
    # Rows LiteLLM deleted (its retention cleanup, most likely) would take billed spend out
    # of CloudZero if restated: those hours are reported, not restated.
    gone = [d for d in differences if d.rows_gone]
    if gone:
        context.log.warning(
            f"{len(gone)} hour(s) hold rows LiteLLM's database no longer has, left as they are "
            f"(keep SPEND_RECONCILE_DAYS under LiteLLM's retention; backfill them if the rows "
            f"were removed on purpose); first: {gone[0].line()}"
        )
    restate = [d for d in differences if not d.rows_gone]
    requests = reconciliation_requests(restate)
    compared = f"{len(hours)} hours {partition_key(hours[0])}..{partition_key(hours[-1])}"
    if not requests:
        return dg.SensorResult(
            skip_reason=f"{compared}: the lake matches LiteLLM's database"
            + (f" except {len(gone)} hour(s) with rows deleted there" if gone else "")
        )
    context.log.info(
        f"{compared}: {len(restate)} hour(s) differ from LiteLLM's database, "
        f"{len(requests)} run(s) requested; first: {restate[0].line()}"
    )
    return dg.SensorResult(run_requests=requests)


# --- freshness of the sources -------------------------------------------------------------

FRESHNESS_INTERVAL_S = 300


@dg.sensor(
    minimum_interval_seconds=FRESHNESS_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the check sources_answering of cloudzero_submission every 5 minutes "
    "(receiver heartbeats, LiteLLM spend-log reads); it fails when a configured source has been "
    "silent longer than SPEND_SOURCE_SILENCE_MINUTES. Requests no run.",
)
def source_freshness_sensor(
    context: dg.SensorEvaluationContext,
    landing: LandingZoneResource,
    litellm: LiteLLMSpendLogsResource,
) -> dg.SensorResult:
    verdict = sources_verdict(context.instance, landing, litellm, datetime.now(timezone.utc))
    if not verdict.passed:
        context.log.warning(verdict.description)
    return dg.SensorResult(asset_events=[verdict.evaluation()])
