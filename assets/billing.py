"""CloudZero: one CBF file per hour, and the AnyCost submission of those files."""

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pyarrow as pa
from pydantic import Field

from assets.cbf_rows import cbf_rows, resource_spend
from assets.checks import Rows, query_records
from assets.metadata import markdown_preview, range_metadata
from assets.partitions import hourly_asset, hourly_partitions, partition_hours
from assets.schemas import AGGREGATES
from resources.cbf import (
    CbfFile,
    cbf_hour_key,
    cost_total,
    exact_sum,
    format_cost,
    load_cbf_hours,
    write_cbf_csv,
)
from resources.cbf_validation import validate_cbf_hours
from resources.cloudzero import CloudZeroResource
from resources.cloudzero_report import MONTH_WARN_SHARE
from resources.lake import LakeResource, hours_between, split_by_hour
from resources.storage import Storage

# The aggregates that carry all of an hour's money (request_errors carries the failed part).
SPEND_AGGREGATES = [name for name, spec in AGGREGATES.items() if not spec.failed_only]


def reconcile(totals: dict[str, Decimal], hour: datetime | None = None) -> None:
    """Every stage must carry the same money; a mismatch never reaches CloudZero."""
    if len(set(totals.values())) > 1:
        where = f"{hour:%Y-%m-%dT%H}:00Z: " if hour else ""
        raise dg.Failure(
            description=f"{where}cost does not reconcile across stages: "
            + ", ".join(f"{name}={total}" for name, total in totals.items()),
            metadata={name: str(total) for name, total in totals.items()},
        )


def hourly_costs(rows: Rows) -> dict[datetime, Decimal]:
    """Exact cost per hour of a lake table (hours without rows are absent)."""
    sql = "SELECT usage_hour, sum(cost) AS cost FROM stage GROUP BY usage_hour"
    return {r["usage_hour"]: r["cost"] for r in query_records(sql, stage=rows)}


def resource_dimensions(cloudzero: CloudZeroResource) -> list[str]:
    try:
        return cloudzero.dimensions()
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None


# The hourly schedule's :10 run writes every hour's CBF file, an empty one for an hour without
# traffic, so this asset is stale only when the pipeline stopped or failed: warn when a run is
# ~20 minutes late, fail when a whole hour was missed. The freshness daemon (on by default)
# evaluates it. cloudzero_submission has no such policy: it is materialised only when a file
# changed, so a quiet hour would make it look stale (see assets/freshness.py).
CBF_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(minutes=90)
)


@hourly_asset(
    deps=["spend_events", *AGGREGATES],
    freshness_policy=CBF_FRESHNESS,
    group_name="billing",
    kinds={"csv", "cloudzero"},
    description="One CloudZero Billing Format file per hour (data/cbf/date=/hour=/cbf.csv), "
    "one row per resource (CLOUDZERO_RESOURCE_DIMENSIONS).",
)
def cloudzero_cbf(
    context: dg.AssetExecutionContext, lake: LakeResource, cloudzero: CloudZeroResource
) -> dg.MaterializeResult:
    hours = partition_hours(context)
    dimensions = resource_dimensions(cloudzero)
    # DuckDB sums spend_events per hour and resource as it streams the files, and each
    # stage per hour: spend_events is never loaded.
    spend = split_by_hour(
        resource_spend(lake.scan("spend_events", hours), dimensions), hours, "usage_hour"
    )
    rows_by_hour = {hour: cbf_rows(part, dimensions) for hour, part in spend.items()}
    stage_costs = {
        name: hourly_costs(lake.scan(name, hours)) for name in ("spend_events", *SPEND_AGGREGATES)
    }
    # Every hour reconciles exactly, spend_events → aggregates → CBF rows, before any file is
    # (re)written: a file on disk is what a submission run sends, materialised or not.
    cbf_totals = {}
    for hour, rows in sorted(rows_by_hour.items()):
        cbf_totals[hour] = cost_total(rows.to_pylist())
        totals = {name: costs.get(hour, Decimal(0)) for name, costs in stage_costs.items()}
        reconcile(totals | {"cloudzero_cbf": cbf_totals[hour]}, hour)
    files = [
        write_cbf_csv(rows, lake.storage, cbf_hour_key(hour))
        for hour, rows in sorted(rows_by_hour.items())
    ]
    rows = pa.concat_tables([rows for _, rows in sorted(rows_by_hour.items())])
    cbf_total = exact_sum(cbf_totals.values())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows.num_rows,
            **range_metadata(hours, files),
            "cost_total": dg.MetadataValue.text(format_cost(cbf_total)),
            "resources": len(set(rows["resource/id"].to_pylist())),
            "resource_dimensions": ", ".join(dimensions),
            "preview": dg.MetadataValue.md(markdown_preview(rows)),
        }
    )


def cbf_files_of(storage: Storage, hours: Sequence[datetime]) -> dict[datetime, CbfFile]:
    """Every hour's CBF file; a missing one means cloudzero_cbf was not materialised."""
    files = load_cbf_hours(storage, hours)
    missing = [hour for hour in hours if hour not in files]
    if missing:
        raise dg.Failure(
            f"no CBF file for {len(missing)} hour(s), first {missing[0]:%Y-%m-%dT%H}:00Z "
            f"({storage.url(cbf_hour_key(missing[0]))}); materialise cloudzero_cbf for "
            "these hours first"
        )
    return files


def problems_table(problems: Mapping[datetime, list[str]]) -> str:
    lines = ["| hour | problem |", "|---|---|"]
    lines += [
        f"| {hour:%Y-%m-%dT%H}:00Z | {reason.replace('|', '/')} |"
        for hour, reasons in sorted(problems.items())
        for reason in reasons
    ]
    return "\n".join(lines)


@dg.asset_check(
    asset=cloudzero_cbf,
    blocking=True,
    partitions_def=hourly_partitions,
    description="Every hour's CBF rows can be sent as they are: required columns, string "
    "values, fixed-point costs, hour alignment, tag keys, one tag set per resource/id.",
)
def cloudzero_cbf_is_valid(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    hours = partition_hours(context)
    files = cbf_files_of(lake.storage, hours)
    problems = validate_cbf_hours({hour: f.rows for hour, f in files.items()})
    first = ", ".join(f"{h:%Y-%m-%dT%H}:00Z: {r[0]}" for h, r in sorted(problems.items())[:3])
    return dg.AssetCheckResult(
        passed=not problems,
        description=f"{len(problems)} of {len(hours)} hours cannot be sent: {first}"
        if problems
        else f"all {len(hours)} hours can be sent",
        metadata={
            "hours_checked": len(hours),
            "hours_failing": len(problems),
            "rows_checked": sum(len(f.rows) for f in files.values()),
            "problems": dg.MetadataValue.md(problems_table(problems)),
        },
    )


def month_hours(hours: Sequence[datetime]) -> list[datetime]:
    """Every hour of the UTC months that ``hours`` touch."""
    months = sorted({h.astimezone(timezone.utc).replace(day=1, hour=0) for h in hours})
    return [
        hour
        for first in months
        for hour in hours_between(first, (first + timedelta(days=32)).replace(day=1))
    ]


@dg.asset_check(
    asset=cloudzero_cbf,
    blocking=False,
    partitions_def=hourly_partitions,
    description="Each month these hours belong to, as its CBF files stand, stays below 80% of "
    "CloudZero's monthly limits (1,000,000 rows, 70 MB); past 100% the month is not sent.",
)
def cloudzero_month_within_limits(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, cloudzero: CloudZeroResource
) -> dg.AssetCheckResult:
    hours = month_hours(partition_hours(context))
    files = load_cbf_hours(lake.storage, hours)
    months = cloudzero.month_outlook(files)
    near = [m for m in months if m.share >= MONTH_WARN_SHARE]
    return dg.AssetCheckResult(
        passed=not near,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(m.describe() for m in near)
        if near
        else f"{len(months)} month(s) below {MONTH_WARN_SHARE:.0%} of CloudZero's limits",
        metadata={
            **{f"month/{m.month}/rows": m.rows for m in months},
            **{f"month/{m.month}/bytes": m.bytes for m in months},
            **{f"month/{m.month}/share": float(m.share) for m in months},
        },
    )


class SubmissionConfig(dg.Config):
    force: bool = Field(
        default=False,
        description="Resend hours even when their receipt says CloudZero holds this exact file.",
    )


@hourly_asset(
    deps=["cloudzero_cbf"],
    group_name="billing",
    kinds={"cloudzero"},
    pool="cloudzero",
    description="The hours' CBF files sent to CloudZero AnyCost Stream with replace_hourly "
    "(changed hours only; emptied hours cleared; receipts under data/cloudzero/receipts/).",
)
def cloudzero_submission(
    context: dg.AssetExecutionContext,
    config: SubmissionConfig,
    lake: LakeResource,
    cloudzero: CloudZeroResource,
) -> dg.MaterializeResult:
    hours = partition_hours(context)
    files = cbf_files_of(lake.storage, hours)
    invalid = validate_cbf_hours({hour: f.rows for hour, f in files.items()})
    report = cloudzero.submit(
        files, context.run.run_id, invalid=invalid, force=config.force, log=context.log.info
    )
    for month in report.months:
        if month.error:
            context.log.error(month.error)
    if report.failed_hours:
        reasons = [f"{h.hour:%Y-%m-%dT%H}:00Z {h.status}: {h.note}" for h in report.failed_hours]
        raise dg.Failure(
            description=f"{len(report.failed_hours)} of {len(hours)} hours were not sent to "
            f"CloudZero ({report.mode}): " + "; ".join(reasons[:5]),
            metadata=report.metadata(),
        )
    return dg.MaterializeResult(metadata=report.metadata())
