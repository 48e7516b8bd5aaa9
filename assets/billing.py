"""CloudZero: one CBF file per hour, and the AnyCost submission of those files."""

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pyarrow as pa
from pydantic import Field

from assets.cbf_rows import cbf_rows, resource_spend
from assets.checks import Rows, exact_decimal, hour_rule_specs, query_records
from assets.hour_rules import HourChecks
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


def reconcile_fault(totals: Mapping[str, Decimal]) -> str | None:
    """Why an hour's money differs across stages, or None when every stage carries it all."""
    if len(set(totals.values())) <= 1:
        return None
    return "cost differs across stages: " + ", ".join(
        f"{name} {format_cost(total)}" for name, total in totals.items()
    )


def hourly_costs(rows: Rows) -> dict[datetime, Decimal]:
    """Exact cost per hour of a lake table (hours without rows are absent)."""
    sql = "SELECT usage_hour, sum(cost) AS cost FROM stage GROUP BY usage_hour"
    # A stage whose money drifted to floats still compares (and then differs), never crashes.
    return {r["usage_hour"]: exact_decimal(r["cost"]) for r in query_records(sql, stage=rows)}


def resource_dimensions(cloudzero: CloudZeroResource) -> list[str]:
    try:
        return cloudzero.dimensions()
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None


# The rules cloudzero_cbf checks on the rows it makes, before writing any file; an hour that
# breaks one (or that an upstream asset holds back) keeps its last file: nothing of it is sent.
CBF_RULES = {
    "cloudzero_cbf_is_valid": "the rows can be sent as they are (required columns, string "
    "values, fixed-point costs, hour alignment, tag keys, one tag set per resource/id)",
    "reconciles_across_stages": "each hour's cost is the same in spend_events, every spend "
    "aggregate and the CBF rows, exactly",
}


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
    "one row per resource (CLOUDZERO_RESOURCE_DIMENSIONS); hours an upstream check holds back "
    "keep their last file.",
    check_specs=hour_rule_specs("cloudzero_cbf", CBF_RULES),
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
    cbf_totals = {hour: cost_total(rows.to_pylist()) for hour, rows in rows_by_hour.items()}
    unreconciled = {
        hour: fault
        for hour in hours
        if (
            fault := reconcile_fault(
                {name: costs.get(hour, Decimal(0)) for name, costs in stage_costs.items()}
                | {"cloudzero_cbf": cbf_totals[hour]}
            )
        )
    }
    invalid = validate_cbf_hours({hour: rows.to_pylist() for hour, rows in rows_by_hour.items()})
    checks = HourChecks(CBF_RULES)
    checks.add(
        hours,
        {
            "cloudzero_cbf_is_valid": {h: "; ".join(reasons) for h, reasons in invalid.items()},
            "reconciles_across_stages": unreconciled,
        },
    )
    lake.set_holds("cloudzero_cbf", hours, checks.held())
    # A file on disk is what a submission run sends: an hour held back here or upstream
    # keeps its last file, every other hour is (re)written.
    held = held_hours(lake.holds(hours))
    written = {hour: rows for hour, rows in sorted(rows_by_hour.items()) if hour not in held}
    files = [
        write_cbf_csv(rows, lake.storage, cbf_hour_key(hour)) for hour, rows in written.items()
    ]
    if held:
        context.log.warning(
            f"{len(held)} of {len(hours)} hours held back from CloudZero: "
            + "; ".join(f"{hour:%Y-%m-%dT%H}:00Z {reasons[0]}" for hour, reasons in held.items())
        )
    rows = pa.concat_tables([rows_by_hour[hour] for hour in sorted(rows_by_hour)])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(t.num_rows for t in written.values()),
            **range_metadata(hours, files),
            "cost_total": dg.MetadataValue.text(
                format_cost(exact_sum(cbf_totals[hour] for hour in written))
            ),
            "resources": len(set(rows["resource/id"].to_pylist())),
            "resource_dimensions": ", ".join(dimensions),
            "hours_held": len(held),
            **({"held_hours": dg.MetadataValue.md(problems_table(held))} if held else {}),
            "preview": dg.MetadataValue.md(markdown_preview(rows)),
        },
        check_results=checks.results(context.assets_def.key),
    )


def held_hours(holds: Mapping[datetime, Mapping[str, list[str]]]) -> dict[datetime, list[str]]:
    """The hours some asset holds back, each with ``"<asset> <rule>: <reason>"`` lines."""
    return {
        hour: [
            f"{asset} {reason}" for asset, reasons in sorted(by_asset.items()) for reason in reasons
        ]
        for hour, by_asset in sorted(holds.items())
    }


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
    held = held_hours(lake.holds(hours))
    files = cbf_files_of(lake.storage, [hour for hour in hours if hour not in held])
    invalid = validate_cbf_hours({hour: f.rows for hour, f in files.items()})
    invalid |= {
        hour: [f"held back by {reason}" for reason in reasons] for hour, reasons in held.items()
    }
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
