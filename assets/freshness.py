"""Freshness that knows quiet from silent: the check ``sources_answering`` on
``cloudzero_submission``.

An hour without traffic has nothing to send, and that is normal. What must fail is a source
the pipeline cannot hear from. Each source's last word is kept where it is produced:

- the webhook receiver: ``landing/_heartbeat/<writer-id>.json``, rewritten every minute by each
  receiver while it runs and can write (``resources.landing``). Once any receiver has written
  one, the webhook is watched: the newest heartbeat is when it was last heard from.
- LiteLLM's spend logs (database or REST API): every ``litellm_spend_logs`` run records an
  observation of that asset, ``answered`` true or false with the error; a source is silent
  from its first failed read after its last answer. With neither source configured there is
  nothing to watch.

A configured source is silent when it has not been heard from for longer than
``SPEND_SOURCE_SILENCE_MINUTES`` (default 30); only that fails the check. The logic is the
plain functions below; ``source_freshness_sensor`` (pipelines) evaluates the check every few
minutes and records the result, so it stays current when no run happens.
"""

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from assets.billing import cloudzero_cbf, cloudzero_submission
from assets.ingest import SPEND_LOG_SOURCES, litellm_spend_logs
from resources.landing import Heartbeat, LandingZoneResource
from resources.litellm import LiteLLMSpendLogsResource

SILENCE_ENV = "SPEND_SOURCE_SILENCE_MINUTES"
DEFAULT_SILENCE_MINUTES = 30
CHECK_NAME = "sources_answering"
WEBHOOK = "webhook receiver"
# Observations read back at most, newest first, to find a source's last answer.
MAX_OBSERVATIONS = 1000
QUIET = "quiet: no traffic, sources answering"


def silence_threshold() -> timedelta:
    value = os.getenv(SILENCE_ENV, str(DEFAULT_SILENCE_MINUTES))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{SILENCE_ENV} must be a positive number of minutes, got {value!r}")
    return timedelta(minutes=int(value))


# --- the pure part -----------------------------------------------------------------------


def _at(moment: datetime | None) -> str:
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}" if moment else "never"


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


@dataclass(frozen=True)
class SourceStatus:
    """What the pipeline last heard from one configured source."""

    name: str
    heard_at: datetime | None  # its last answer (None: none on record)
    unheard_since: datetime | None  # its silence counts from here; None: its last word answered
    error: str = ""  # why its latest read failed
    note: str = ""  # which receiver beat last, or when a failing source last answered

    def silence(self, now: datetime) -> timedelta:
        return now - self.unheard_since if self.unheard_since else timedelta(0)


def receiver_status(heartbeats: Sequence[Heartbeat]) -> SourceStatus | None:
    """The webhook receivers as one source, heard at their newest heartbeat; ``None`` (not
    watched) until a receiver has written one. A heartbeat is expected every minute, so the
    silence counts from the newest one."""
    if not heartbeats:
        return None
    newest = max(heartbeats, key=lambda beat: beat.at)
    note = f"newest heartbeat of {len(heartbeats)} receiver writer(s): {newest.writer}"
    return SourceStatus(WEBHOOK, newest.at, newest.at, note=note)


@dataclass(frozen=True)
class SpendLogRead:
    """One ``litellm_spend_logs`` run's word on its source (an observation of the asset)."""

    at: datetime
    source: str
    answered: bool
    error: str = ""


def spend_log_status(source: str, reads: Sequence[SpendLogRead]) -> SourceStatus | None:
    """The configured spend-log source (``database``, ``api`` or ``none``) from the runs'
    reads, newest first; ``None`` when no source is configured. Runs read it once an hour, so
    its silence counts from the first failed read after its last answer, not from the answer:
    one failed read an hour after the last one is not yet a silent source."""
    if source not in SPEND_LOG_SOURCES:
        return None
    name = SPEND_LOG_SOURCES[source]
    mine = [read for read in reads if read.source == source]
    if not mine:
        return SourceStatus(name, None, None, note="not read yet")
    if mine[0].answered:
        return SourceStatus(name, mine[0].at, None)
    failed = list(itertools.takewhile(lambda read: not read.answered, mine))
    answered = mine[len(failed)] if len(failed) < len(mine) else None
    return SourceStatus(
        name,
        answered.at if answered else None,
        failed[-1].at,
        failed[0].error,
        f"last answered {_at(answered.at)}" if answered else "no answer on record",
    )


@dataclass(frozen=True)
class LatestCbf:
    """The latest ``cloudzero_cbf`` materialisation: its hours and the rows they hold."""

    rows: int
    hours: str


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any]

    def check_result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=self.passed, description=self.description, metadata=self.metadata
        )

    def evaluation(self) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=cloudzero_submission.key,
            check_name=CHECK_NAME,
            passed=self.passed,
            description=self.description,
            metadata=self.metadata,
        )


def _sources_table(statuses: Sequence[SourceStatus], now: datetime, threshold: timedelta) -> str:
    lines = ["| source | last heard | silent for | state | error |", "|---|---|---|---|---|"]
    for status in statuses:
        silence = status.silence(now)
        state = "silent" if silence > threshold else "answering"
        if status.unheard_since and state == "answering" and status.error:
            state = "failing"
        error = status.error.replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {status.name} | {_at(status.heard_at)} | {_minutes(silence)} min | {state} "
            f"| {error} |"
        )
    return "\n".join(lines)


def judge(
    statuses: Sequence[SourceStatus | None],
    now: datetime,
    threshold: timedelta,
    latest: LatestCbf | None = None,
) -> Verdict:
    """Fails only when a configured source (``None``: not configured) has been silent for
    longer than ``threshold``; passes, saying quiet, when sources answer and the latest CBF
    run had nothing to send."""
    watched = [status for status in statuses if status is not None]
    silent = [status for status in watched if status.silence(now) > threshold]
    failing = [s for s in watched if s.error and s not in silent]
    limit = _minutes(threshold)
    metadata: dict[str, Any] = {
        "threshold_minutes": limit,
        "silent_sources": ", ".join(s.name for s in silent) or "none",
        "sources": dg.MetadataValue.md(_sources_table(watched, now, threshold)),
    }
    if latest is not None:
        metadata |= {"latest_cbf_rows": latest.rows, "latest_cbf_hours": latest.hours}
    if silent:
        described = [
            f"{s.name} since {_at(s.unheard_since)} ({_minutes(s.silence(now))} min, threshold "
            f"{limit}" + (f"; {s.note}): {s.error}" if s.error else f"): {s.note}")
            for s in silent
        ]
        return Verdict(False, "silent: " + "; ".join(described), metadata)
    if not watched:
        return Verdict(
            True,
            "no source to watch: no receiver heartbeat under landing/_heartbeat/ and no LiteLLM "
            "spend-log source configured",
            metadata,
        )
    heard = ", ".join(f"{s.name} {_at(s.heard_at)}" for s in watched)
    if failing:
        head = "; ".join(
            f"{s.name} failing since {_at(s.unheard_since)} ({_minutes(s.silence(now))} of "
            f"{limit} min, not yet silent; {s.note}): {s.error}"
            for s in failing
        )
    elif latest is not None and latest.rows == 0:
        head = f"{QUIET} (nothing to send in {latest.hours})"
    elif latest is not None:
        head = f"sources answering ({latest.rows} CBF rows in {latest.hours})"
    else:
        head = "sources answering (no CBF file materialised yet)"
    return Verdict(True, f"{head}; last heard: {heard}", metadata)


# --- what the runs record, and reading it back --------------------------------------------


def spend_log_reads(instance: dg.DagsterInstance, source: str) -> list[SpendLogRead]:
    """The recorded reads of ``source``, newest first, back to its last answer (at most
    ``MAX_OBSERVATIONS`` observations are looked at)."""
    reads: list[SpendLogRead] = []
    cursor, looked_at = None, 0
    while looked_at < MAX_OBSERVATIONS:
        page = instance.fetch_observations(litellm_spend_logs.key, limit=100, cursor=cursor)
        looked_at += len(page.records)
        for record in page.records:
            meta = {k: v.value for k, v in record.asset_observation.metadata.items()}
            if meta.get("source") != source:
                continue
            at = datetime.fromtimestamp(record.timestamp, timezone.utc)
            reads.append(
                SpendLogRead(at, source, meta.get("answered") is True, meta.get("error", ""))
            )
            if reads[-1].answered:
                return reads
        if not page.has_more:
            break
        cursor = page.cursor
    return reads


def latest_cbf(instance: dg.DagsterInstance) -> LatestCbf | None:
    records = instance.fetch_materializations(cloudzero_cbf.key, limit=1).records
    if not records:
        return None
    meta = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
    first, last = meta.get("range_start", "?"), meta.get("range_end", "?")
    hours = first if first == last else f"{first}..{last}"
    return LatestCbf(int(meta.get("dagster/row_count", 0)), hours)


def sources_verdict(
    instance: dg.DagsterInstance,
    landing: LandingZoneResource,
    litellm: LiteLLMSpendLogsResource,
    now: datetime,
    threshold: timedelta | None = None,
) -> Verdict:
    """``sources_answering`` as of ``now``: heartbeats from storage, the rest from the
    instance."""
    statuses = [
        receiver_status(landing.zone().heartbeats()),
        spend_log_status(litellm.source, spend_log_reads(instance, litellm.source)),
    ]
    return judge(statuses, now, threshold or silence_threshold(), latest_cbf(instance))


@dg.asset_check(
    asset=cloudzero_submission,
    name=CHECK_NAME,
    blocking=False,
    description="Fails when a configured source has been silent for longer than "
    "SPEND_SOURCE_SILENCE_MINUTES (default 30): no receiver heartbeat for that long, or LiteLLM's "
    "database or API failing its reads for that long. Passes as quiet when the sources answer "
    "and there is nothing to send. Evaluated by source_freshness_sensor.",
)
def sources_answering(
    context: dg.AssetCheckExecutionContext,
    landing: LandingZoneResource,
    litellm: LiteLLMSpendLogsResource,
) -> dg.AssetCheckResult:
    now = datetime.now(timezone.utc)
    return sources_verdict(context.instance, landing, litellm, now).check_result()
